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
