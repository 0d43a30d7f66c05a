"""`python -m dharma_train.data.check`: a report a person reads, exit codes a script can use, pages kept on request."""

import io
import json

import datasets
import pytest
from PIL import Image

from dharma_train.data.check import main
from dharma_train.data.pages import load_pages


def _parquet(path, broken: bool):
    rows = []
    for i in range(3):
        buffer = io.BytesIO()
        Image.new("RGB", (20 + i, 30), "white").save(buffer, "PNG")
        rows.append({"id": i, "image": buffer.getvalue(), "assistant": json.dumps({"text": f"p{i}"})})
    if broken:
        rows[1]["assistant"] = "{oops"
    datasets.Dataset.from_list(rows).to_parquet(str(path))
    return str(path)


def _run(capsys, *argv):
    with pytest.raises(SystemExit) as exit_:
        main(list(argv))
    return exit_.value.code, capsys.readouterr()


def test_clean_source_exits_0_and_keeps_pages_when_asked(tmp_path, capsys):
    code, out = _run(capsys, _parquet(tmp_path / "ok.parquet", False), "--output-dir", str(tmp_path / "checked"))
    assert code == 0
    assert "3 rows, 3 used (0 of them fixed), 0 skipped" in out.out
    assert [p.id for p in load_pages(tmp_path / "checked")] == ["0", "1", "2"]
    assert json.loads((tmp_path / "checked" / "load_report.json").read_text())["sources"][0]["used"] == 3


def test_skipped_rows_exit_1_with_reason_and_row(tmp_path, capsys):
    source = _parquet(tmp_path / "bad.parquet", True)
    code, out = _run(capsys, source)
    assert code == 1
    assert "skipped invalid_json: 1 (the answer is not a JSON object)" in out.out
    assert f"{source} row 1 (id 1): 'assistant' is not valid JSON" in out.out
    code, out = _run(capsys, source, "--json")
    assert json.loads(out.out)["skips"] == {"invalid_json": 1}


def test_unreadable_source_and_strict_failures_exit_2(tmp_path, capsys):
    code, out = _run(capsys, str(tmp_path / "none.parquet"))
    assert code == 2 and "does not exist" in out.err
    code, out = _run(capsys, _parquet(tmp_path / "bad.parquet", True), "--strict")
    assert code == 2 and "row 1 (id 1): invalid_json" in out.err


def test_a_folder_of_pdfs_and_silver_pages_are_checked_like_any_source(tmp_path, capsys):
    from dharma_train.data.text_layer_pages import text_layer_pages
    from tests.data.documents import Picture, Text, make_pdf

    scans = tmp_path / "scans"
    scans.mkdir()
    (scans / "doc.pdf").write_bytes(make_pdf([[Text("um", 72, 700)], [Picture(0, 0, 595, 842)],
                                              [Text("três", 72, 700)]]))
    for page in (1, 2):
        (scans / f"doc.{page}.txt").write_text(f"página {page}\n")
    code, out = _run(capsys, str(scans), "--pdf-dpi", "72")
    assert code == 1 and f"{scans} (sidecar): 3 rows, 2 used (0 of them fixed), 1 skipped" in out.out
    assert f"{scans}/doc.pdf page 3 (id doc.3): no answer for page 3 of doc.pdf" in out.out
    assert "a run would stop" not in out.out
    text_layer_pages(scans, tmp_path / "silver", dpi=72)
    code, out = _run(capsys, str(tmp_path / "silver"))
    assert code == 0 and "unverified answers pdf_text_layer: 2 (the text layer of a born-digital PDF" in out.out
    (scans / "doc.1.txt").unlink()
    code, out = _run(capsys, str(scans), "--pdf-dpi", "72")
    assert "a run would stop on this source: 67% of its rows skipped, more than data.max_skipped_share (0.5)" in out.out


def test_with_the_runs_model_an_overlong_answer_is_skipped_as_the_run_skips_it(tmp_path, capsys):
    rows = []
    for i, text in enumerate(["short", "x " * 3_000_000]):  # six million characters: no model holds that
        buffer = io.BytesIO()
        Image.new("RGB", (40 + i, 40), "white").save(buffer, "PNG")
        rows.append({"id": i, "image": buffer.getvalue(), "assistant": json.dumps({"text": text})})
    source = str(tmp_path / "long.parquet")
    datasets.Dataset.from_list(rows).to_parquet(source)
    code, out = _run(capsys, source)
    assert code == 0, "without --model lengths are not checked"
    code, out = _run(capsys, source, "--model", "tiny")
    assert code == 1
    assert "skipped overlong: 1" in out.out and f"{source} row 1 (id 1)" in out.out
    assert "over the maximum sequence length 4096" in out.out
    code, out = _run(capsys, source, "--model", "tiny", "--max-length", "100000000")
    assert code == 0
    code, out = _run(capsys, source, "--max-length", "10")
    assert code == 2 and "--max-length needs --model" in out.err
