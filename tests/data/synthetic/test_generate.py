import pytest
from PIL import Image

from dharma_train.data.pages import PAGES_FILE, load_pages
from dharma_train.data.synthetic.generate import (
    ALL_FAMILIES,
    default_max_words,
    generate_pages,
    generate_splits,
    page_size,
)


def _files(folder):
    return {path.relative_to(folder): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


def test_same_seed_writes_byte_identical_files(tmp_path):
    generate_pages(tmp_path / "a", 9, seed=3)
    generate_pages(tmp_path / "b", 9, seed=3)
    first, second = _files(tmp_path / "a"), _files(tmp_path / "b")
    assert len(first) == 10  # nine images and pages.jsonl
    assert first == second


def test_different_seeds_write_different_pages(tmp_path):
    first = generate_pages(tmp_path / "a", 6, seed=0)
    second = generate_pages(tmp_path / "b", 6, seed=1)
    assert all(p.answer != q.answer for p, q in zip(first, second, strict=True))
    assert all(p.image.read_bytes() != q.image.read_bytes() for p, q in zip(first, second, strict=True))


def test_pages_round_trip_through_load_pages(tmp_path):
    written = generate_pages(tmp_path, 6, seed=0, task="plain", id_prefix="x")
    loaded = load_pages(tmp_path)
    assert loaded.pages == written.pages
    assert [page.id for page in loaded] == [f"x-{index:05d}" for index in range(6)]
    assert [page.family for page in loaded] == ["printed", "handwritten", "legal"] * 2
    assert {page.task for page in loaded} == {"plain"}
    for page in loaded:
        assert page.image == tmp_path / "images" / f"{page.id}.png"
        with Image.open(page.image) as image:
            assert image.size == (224, 308)
    assert '"images/x-00000.png"' in (tmp_path / PAGES_FILE).read_text(encoding="utf-8")


def test_a_page_does_not_depend_on_how_many_are_generated(tmp_path):
    few = generate_pages(tmp_path / "few", 3, seed=5)
    more = generate_pages(tmp_path / "more", 5, seed=5)
    assert [page.answer for page in few] == [page.answer for page in more.pages[:3]]
    assert [page.image.read_bytes() for page in few] == [page.image.read_bytes() for page in more.pages[:3]]


def test_size_and_families_are_honoured(tmp_path):
    pages = generate_pages(tmp_path, 2, seed=0, width=1024, height=1408, families=("legal",), degrade=False)
    assert {page.family for page in pages} == {"legal"}
    for page in pages:
        with Image.open(page.image) as image:
            assert image.size == (1024, 1408)


def test_splits_are_separate_and_loadable(tmp_path):
    train, evaluation = generate_splits(tmp_path, n_train=12, n_eval=6, seed=0)
    assert len(load_pages(tmp_path / "train")) == 12
    assert len(load_pages(tmp_path / "eval")) == 6
    assert all(page.id.startswith("train-") for page in train)
    assert all(page.id.startswith("eval-") for page in evaluation)
    assert not {page.answer.text for page in train} & {page.answer.text for page in evaluation}


def test_splits_pass_options_through(tmp_path):
    train, evaluation = generate_splits(tmp_path, 2, 2, seed=0, families=("handwritten",), task="plain")
    assert {(page.family, page.task) for page in [*train, *evaluation]} == {("handwritten", "plain")}


@pytest.mark.parametrize("arguments, message", [
    ({"n": 0}, "at least 1"),
    ({"families": ("printed", "poster")}, "poster"),
    ({"families": "printed"}, "sequence"),
    ({"task": "markdown"}, "task"),
    ({"families": ("general", "poster")}, "poster"),
])
def test_bad_arguments_fail_before_writing(tmp_path, arguments, message):
    with pytest.raises(ValueError, match=message):
        generate_pages(tmp_path / "out", **{"n": 2, "seed": 0, **arguments})
    assert not (tmp_path / "out").exists()


def test_the_worker_count_does_not_change_a_byte(tmp_path):
    generate_pages(tmp_path / "one", 6, seed=2, families=ALL_FAMILIES, workers=1)
    generate_pages(tmp_path / "two", 6, seed=2, families=ALL_FAMILIES, workers=2)
    assert _files(tmp_path / "one") == _files(tmp_path / "two")


def test_general_task_writes_mixed_language_markdown_pages(tmp_path):
    pages = generate_pages(tmp_path, 4, seed=0, task="general")
    assert {(page.family, page.task) for page in pages} == {("general", "general")}
    assert all(page.answer.text.startswith("# ") and not page.answer.margin for page in pages)
    assert load_pages(tmp_path).pages == pages.pages


def test_every_family_renders_with_its_answer_at_full_size(tmp_path):
    width, height = page_size(1024)
    pages = generate_pages(tmp_path, 8, seed=1, width=width, height=height, families=ALL_FAMILIES,
                           max_words=default_max_words(1024), image_format="jpg")
    assert [page.family for page in pages] == list(ALL_FAMILIES) * 2
    for page in pages:
        assert page.image.suffix == ".jpg"
        with Image.open(page.image) as image:
            assert image.size == (724, 1024) and image.format == "JPEG"
        boleto = "Linha digitável" in page.answer.text  # a bank slip is a short form
        assert len(page.answer.text.split()) > (20 if boleto else 40), "a 1024 px page holds a full page of text"
        if page.family != "general":  # Italian and English sections may have no accent
            assert set(page.answer.to_plain_text()) & set("ãçéêóíáú"), page.id


def test_text_too_long_for_the_page_is_redrawn_with_fewer_words(tmp_path):
    first = generate_pages(tmp_path / "a", 3, seed=0, width=120, height=160, max_words=400)
    again = generate_pages(tmp_path / "b", 3, seed=0, width=120, height=160, max_words=400)
    assert all(0 < len(page.answer.text.split()) < 400 for page in first)
    assert [page.answer for page in first] == [page.answer for page in again]


def test_page_size_and_word_budget_follow_the_long_side():
    assert page_size(1024) == (724, 1024)
    assert default_max_words(160) == 40 and 180 <= default_max_words(1024) <= 220


@pytest.mark.parametrize("arguments, message", [
    ({"workers": 0}, "workers"), ({"image_format": "tiff"}, "image_format"), ({"width": 20}, "56"),
    ({"max_words": 0}, "max_words"),
])
def test_more_bad_arguments_fail_before_writing(tmp_path, arguments, message):
    with pytest.raises(ValueError, match=message):
        generate_pages(tmp_path / "out", **{"n": 2, "seed": 0, **arguments})
    assert not (tmp_path / "out").exists()
