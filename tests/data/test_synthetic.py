import pytest
from PIL import Image

from dharma_train.data.pages import PAGES_FILE, load_pages
from dharma_train.data.synthetic import generate_pages, generate_splits


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
])
def test_bad_arguments_fail_before_writing(tmp_path, arguments, message):
    with pytest.raises(ValueError, match=message):
        generate_pages(tmp_path / "out", **{"n": 2, "seed": 0, **arguments})
    assert not (tmp_path / "out").exists()
