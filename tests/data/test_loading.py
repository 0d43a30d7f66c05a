"""Loading real-data layouts: a benchmark-format parquet with deliberately broken rows gives exact counts, every
other layout gives the same pages, and strict mode stops on the first bad row."""

import base64
import io
import json

import datasets
import numpy as np
import pytest
from PIL import Image

from dharma_train.data.loading import REPORT_FILE, load_page_set, load_source
from dharma_train.data.pages import load_pages
from dharma_train.errors import DataError

MAX_PIXELS = 200 * 200


def _png(seed: int, size=(120, 160), mode="RGB") -> bytes:
    """A distinct page per seed (random pixels), so images only collide where a test means them to."""
    pixels = np.random.default_rng(seed).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    image = Image.fromarray(pixels).convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG" if mode == "CMYK" else "PNG")
    return buffer.getvalue()


def _answer(**fields) -> str:
    return json.dumps(fields, ensure_ascii=False)


FEATURES = datasets.Features({
    "id": datasets.Value("int64"), "image": datasets.Image(), "image_base64": datasets.Value("string"),
    "assistant": datasets.Value("string"), "assistant_without_json": datasets.Value("string"),
    "category": datasets.Value("string"), "source": datasets.Value("string"),
})


def _benchmark_rows():
    """(row, expected outcome): every case the loader must count, in the benchmark's own columns."""
    good = _png(0)
    cases = [
        ({"image": good, "assistant": _answer(text="Capítulo I")}, "used"),
        ({"image": _png(1), "assistant": _answer(header="OFÍCIO Nº 12", margin="fl. 2", footer="Rua A, 10",
                                                  text="Senhor Diretor,"), "category": "legal"}, "used"),
        ({"image": None, "image_base64": base64.b64encode(_png(2)).decode(), "assistant": _answer(text="só base64")},
         "used"),
        ({"image": _png(3), "assistant": None, "assistant_without_json": "só o texto"}, "used"),
        ({"image": _png(4, mode="CMYK"), "assistant": _answer(text="cmyk")}, "converted_mode"),
        ({"image": _png(5, mode="P"), "assistant": _answer(text="paleta")}, "converted_mode"),
        ({"image": _png(6, size=(400, 300)), "assistant": _answer(text="grande")}, "resized"),
        ({"image": b"\x89PNG\r\n\x1a\n not really", "assistant": _answer(text="x")}, "corrupt_image"),
        ({"image": _png(7)[:300], "assistant": _answer(text="x")}, "truncated_image"),
        ({"image": _png(8), "assistant": '{"text": "sem fim'}, "invalid_json"),
        ({"image": _png(9), "assistant": ""}, "empty_answer"),
        ({"image": _png(10), "assistant": "{}"}, "empty_answer"),
        ({"image": None, "image_base64": None, "assistant": _answer(text="sem imagem")}, "missing_field"),
        ({"image": _png(11), "assistant": None, "assistant_without_json": None}, "missing_field"),
        ({"image": _png(12), "assistant": _answer(text="x", title="Título")}, "extra_fields"),
        ({"image": _png(13), "assistant": json.dumps({"text": 5})}, "non_string_value"),
        ({"image": good, "assistant": _answer(text="Capítulo I de novo")}, "duplicate_image"),
    ]
    rows = []
    for index, (row, outcome) in enumerate(cases):
        image = row.pop("image")
        rows.append(({"id": index, "image": None if image is None else {"bytes": image, "path": None},
                      "image_base64": None, "assistant_without_json": None, "category": None,
                      "source": "test", **row}, outcome))
    rows.append(({**rows[1][0], "image": {"bytes": _png(14), "path": None}}, "duplicate_id"))  # id 1 again
    return rows


def _write_parquet(path):
    rows = _benchmark_rows()
    columns = {key: [row[key] for row, _ in rows] for key in FEATURES}
    datasets.Dataset.from_dict(columns, features=FEATURES).to_parquet(str(path))
    return [outcome for _, outcome in rows]


def test_benchmark_parquet_with_broken_rows_gives_exact_counts(tmp_path):
    outcomes = _write_parquet(tmp_path / "bench.parquet")
    loaded = load_source(tmp_path / "bench.parquet", tmp_path / "images", max_pixels=MAX_PIXELS)
    report = loaded.report.to_dict()
    assert report["format"] == "parquet"
    assert (report["rows"], report["used"], report["fixed"], report["skipped"]) == (18, 7, 3, 11)
    assert report["fixes"] == {"converted_mode": 2, "resized": 1}
    assert report["skips"] == {"corrupt_image": 1, "truncated_image": 1, "invalid_json": 1, "empty_answer": 2,
                               "missing_field": 2, "extra_fields": 1, "non_string_value": 1, "duplicate_image": 1,
                               "duplicate_id": 1}
    assert report["ignored_columns"] == {"source": 18}
    assert report["tasks"] == {"structured": 6, "plain": 1}
    assert report["families"] == {"printed": 6, "legal": 1}
    used = [str(i) for i, outcome in enumerate(outcomes) if outcome in ("used", "converted_mode", "resized")]
    assert [page.id for page in loaded.pages] == used
    assert report["examples"]["truncated_image"][0]["row"].endswith("bench.parquet row 8")
    assert report["examples"]["duplicate_image"][0]["detail"].startswith("same image bytes as")
    pages = {page.id: page for page in loaded.pages}
    assert pages["1"].answer.header == "OFÍCIO Nº 12" and pages["1"].family == "legal"
    assert pages["3"].task == "plain" and pages["3"].answer.text == "só o texto"
    for page in loaded.pages:
        with Image.open(page.image) as image:
            assert image.mode in ("RGB", "L") and image.width * image.height <= MAX_PIXELS
    with Image.open(pages["6"].image) as image:
        assert image.size == (230, 173)  # 400x300 scaled by sqrt(40000 / 120000), aspect ratio kept


def test_images_are_stored_once_by_content(tmp_path):
    _write_parquet(tmp_path / "bench.parquet")
    first = load_source(tmp_path / "bench.parquet", tmp_path / "images", max_pixels=MAX_PIXELS)
    stamps = {path: path.stat().st_mtime_ns for path in (tmp_path / "images").iterdir()}
    second = load_source(tmp_path / "bench.parquet", tmp_path / "images", max_pixels=MAX_PIXELS)
    assert [p.image for p in first.pages] == [p.image for p in second.pages]
    assert {path: path.stat().st_mtime_ns for path in (tmp_path / "images").iterdir()} == stamps
    assert len(stamps) == len(first.pages)
    assert not [p for p in (tmp_path / "images").iterdir() if p.name.startswith(".")]


def test_strict_stops_on_the_first_bad_row_naming_file_row_id_and_reason(tmp_path):
    _write_parquet(tmp_path / "bench.parquet")
    with pytest.raises(DataError, match=r"bench\.parquet row 7 \(id 7\): corrupt_image: not a readable image"):
        load_source(tmp_path / "bench.parquet", tmp_path / "images", strict=True, max_pixels=MAX_PIXELS)


def test_fixes_are_not_failures_in_strict_mode(tmp_path):
    rows = [({"id": 0, "image": _png(0, size=(400, 300)), "assistant": _answer(text="a")})]
    datasets.Dataset.from_list(rows).to_parquet(str(tmp_path / "ok.parquet"))
    loaded = load_source(tmp_path / "ok.parquet", tmp_path / "images", strict=True, max_pixels=MAX_PIXELS)
    assert loaded.report.fixes == {"resized": 1}


def test_benchmark_rows_as_jsonl_with_base64_images(tmp_path):
    lines = [json.dumps({"id": 1, "image_base64": base64.b64encode(_png(1)).decode(), "assistant": _answer(text="a")}),
             json.dumps({"id": 2, "image_base64": "data:image/png;base64," + base64.b64encode(_png(2)).decode(),
                         "assistant": _answer(text="b")}),
             "{not json",
             "",
             json.dumps(["a", "list"]),
             json.dumps({"id": 3, "image_base64": "@@@", "assistant": _answer(text="c")})]
    (tmp_path / "bench.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    loaded = load_source(tmp_path / "bench.jsonl", tmp_path / "images")
    assert [page.id for page in loaded.pages] == ["1", "2"]
    assert loaded.report.skips == {"invalid_json": 2, "corrupt_image": 1}
    assert loaded.report.examples["invalid_json"][0]["row"] == f"{tmp_path / 'bench.jsonl'}:3"


def test_manifest_with_image_paths_uses_files_in_place(tmp_path):
    (tmp_path / "scans").mkdir()
    (tmp_path / "scans" / "a.png").write_bytes(_png(1))
    (tmp_path / "scans" / "big.png").write_bytes(_png(2, size=(400, 300)))
    rows = [{"id": "a", "image": "scans/a.png", "answer": {"text": "olá"}, "family": "handwritten"},
            {"id": "b", "image": "scans/big.png", "assistant": _answer(text="grande")},
            {"id": "c", "image": "scans/none.png", "text": "perdida"},
            {"id": "d", "image": 7, "text": "número"},
            {"id": "e", "image": "scans/a.png", "answer": {"text": "olá"}, "task": "cursive"}]
    (tmp_path / "manifest.jsonl").write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    loaded = load_source(tmp_path / "manifest.jsonl", tmp_path / "images", max_pixels=MAX_PIXELS)
    pages = {page.id: page for page in loaded.pages}
    assert pages["a"].image == tmp_path / "scans" / "a.png" and pages["a"].family == "handwritten"
    assert pages["b"].image.parent == tmp_path / "images"
    assert loaded.report.skips == {"missing_file": 1, "non_string_value": 1, "invalid_value": 1}


def test_page_folder_goes_through_the_same_checks(tmp_path, pages):
    train, _ = pages
    loaded = load_source(train.root, tmp_path / "images")
    assert loaded.report.format == "pages"
    assert [(p.id, p.image, p.answer, p.family) for p in loaded.pages] == \
           [(p.id, p.image, p.answer, p.family) for p in train]
    assert loaded.report.used == len(train) and loaded.report.skipped == 0


def test_sidecar_folder_of_images_with_json_and_txt(tmp_path):
    folder = tmp_path / "scans"
    (folder / "legal").mkdir(parents=True)
    (folder / "p1.png").write_bytes(_png(1))
    (folder / "p1.json").write_text(_answer(header="CERTIDÃO", text="Certifico que..."), encoding="utf-8")
    (folder / "legal" / "p2.jpg").write_bytes(_png(2, mode="CMYK"))
    (folder / "legal" / "p2.txt").write_text("texto corrido", encoding="utf-8")
    (folder / "p3.png").write_bytes(_png(3))  # no answer beside it
    (folder / "p4.json").write_text(_answer(text="sem imagem"), encoding="utf-8")  # no image beside it
    (folder / "p5.png").write_bytes(_png(5))
    (folder / "p5.json").write_text('{"text": ', encoding="utf-8")
    (folder / "p6.png").write_bytes(_png(6))
    (folder / "p6.txt").write_bytes("latin-1 \xe7".encode("latin-1"))
    loaded = load_source(folder, tmp_path / "images")
    assert loaded.report.format == "sidecar"
    pages = {page.id: page for page in loaded.pages}
    assert sorted(pages) == ["legal/p2", "p1"]
    assert pages["p1"].answer.header == "CERTIDÃO" and pages["p1"].task == "structured"
    assert pages["legal/p2"].task == "plain" and loaded.report.fixes == {"converted_mode": 1}
    assert loaded.report.skips == {"missing_field": 2, "invalid_json": 1, "unreadable_text": 1}


def test_saved_dataset_dict_needs_its_split_named(tmp_path):
    rows = [{"id": i, "image": {"bytes": _png(i), "path": None}, "assistant": _answer(text=f"p{i}")} for i in range(3)]
    features = datasets.Features({"id": datasets.Value("int64"), "image": datasets.Image(),
                                  "assistant": datasets.Value("string")})
    split = datasets.Dataset.from_list(rows, features=features)
    datasets.DatasetDict({"train": split, "test": split.select([0])}).save_to_disk(str(tmp_path / "saved"))
    with pytest.raises(DataError, match=r"has splits \['test', 'train'\]; name one as .*saved:SPLIT"):
        list(load_source(tmp_path / "saved", tmp_path / "images").pages)
    loaded = load_source(f"{tmp_path / 'saved'}:train", tmp_path / "images")
    assert loaded.report.format == "dataset" and [p.id for p in loaded.pages] == ["0", "1", "2"]
    split.save_to_disk(str(tmp_path / "single"))
    assert len(load_source(tmp_path / "single", tmp_path / "images").pages) == 3


def test_hub_dataset_offline_is_one_clear_error(tmp_path):
    with pytest.raises(DataError, match=r"'someone/some-dataset' cannot be loaded from the Hugging Face Hub"):
        load_source("someone/some-dataset:test", tmp_path / "images")


@pytest.mark.parametrize("location, message", [
    ("/no/such/place", "data source /no/such/place does not exist"),
    ("notes.txt", "cannot tell the format of a .txt file"),
    ("notes.jsonl:train", "names a dataset split"),
])
def test_unknown_sources_are_named(tmp_path, location, message):
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "notes.jsonl").write_text("{}")
    with pytest.raises(DataError, match=message):
        load_source(location if location.startswith("/") else tmp_path / location, tmp_path / "images")


def test_images_already_in_an_earlier_split_are_skipped(tmp_path):
    rows = [{"id": i, "image": _png(i), "assistant": _answer(text=str(i))} for i in range(3)]
    datasets.Dataset.from_list(rows).to_parquet(str(tmp_path / "a.parquet"))
    train = load_source(tmp_path / "a.parquet", tmp_path / "images")
    taken = {digest: "train" for digest in train.image_hashes.values()}
    rows = [{"id": 10 + i, "image": _png(i + 2), "assistant": _answer(text=str(i))} for i in range(3)]
    datasets.Dataset.from_list(rows).to_parquet(str(tmp_path / "b.parquet"))
    evaluation = load_source(tmp_path / "b.parquet", tmp_path / "images", split="eval", taken=taken)
    assert [p.id for p in evaluation.pages] == ["11", "12"]
    assert evaluation.report.skips == {"image_in_other_split": 1}


def test_one_source_saved_as_a_page_folder_with_its_report(tmp_path):
    _write_parquet(tmp_path / "bench.parquet")
    page_set = load_page_set(tmp_path / "bench.parquet", tmp_path / "eval", max_pixels=MAX_PIXELS,
                             max_skipped_share=0.7)  # 11 of its 18 rows are broken on purpose
    assert [p.id for p in load_pages(tmp_path / "eval")] == [p.id for p in page_set] == [str(i) for i in range(7)]
    assert json.loads((tmp_path / "eval" / REPORT_FILE).read_text())["sources"][0]["skipped"] == 11
    datasets.Dataset.from_list([{"id": 0, "image": b"x", "assistant": "{}"}]).to_parquet(str(tmp_path / "bad.parquet"))
    with pytest.raises(DataError, match="no usable pages"):
        load_page_set(tmp_path / "bad.parquet", tmp_path / "bad")


def test_a_source_that_lost_most_of_its_rows_stops_in_one_line(tmp_path):
    _write_parquet(tmp_path / "bench.parquet")
    with pytest.raises(DataError) as error:
        load_page_set(tmp_path / "bench.parquet", tmp_path / "eval", max_pixels=MAX_PIXELS)
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith(f"{tmp_path / 'bench.parquet'} (the eval pages) lost 11 of its 18 rows (61%: "
                              f"empty_answer 2, missing_field 2, ")
    assert "more than the 50% allowed (data.max_skipped_share, --max-skipped-share)" in message
    assert json.loads((tmp_path / "eval" / REPORT_FILE).read_text())["sources"][0]["skipped"] == 11, "report first"
