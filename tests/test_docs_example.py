"""The Python example in docs/python-api.md runs exactly as written."""

import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[1] / "docs" / "python-api.md"


def _example() -> str:
    return re.search(r"```python\n(.*?)```", DOC.read_text(), re.S).group(1)


def test_example_is_about_fifteen_lines():
    lines = [line for line in _example().splitlines() if line.strip()]
    assert len(lines) <= 17


@pytest.mark.slow
def test_docs_example_runs_and_writes_a_report(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    exec(compile(_example(), str(DOC), "exec"), {})
    printed = capsys.readouterr().out
    assert [line.split()[0] for line in printed.splitlines()[-4:]] == ["base", "general_ocr", "structured", "dpo"]
    report = (tmp_path / "runs/api/report.md").read_text()
    assert "| structured | sft |" in report
    # a DPO stage that mined too few pairs prints `skipped` and the structured model it passed on, as the doc shows
    dpo, structured = printed.splitlines()[-1].split(), printed.splitlines()[-2].split()
    if dpo[1] == "skipped":
        assert dpo[-1] == structured[-1] == "runs/api/02_structured/model" and "skipped dpo" in report
    else:
        assert dpo[-1] == "runs/api/03_dpo/model" and dpo[1] in ("kept", "rejected")
