"""`python -m dharma_train.evaluation` on a saved model and on the embedded one, offline."""

import json
import subprocess
import sys

from PIL import Image


def test_evaluates_a_model_alone_and_writes_its_files(tmp_path, pages, tiny_artifact):
    out = tmp_path / "eval"
    result = subprocess.run([sys.executable, "-m", "dharma_train.evaluation", "--model", tiny_artifact.path,
                             "--pages", str(pages[1].root), "--max-new-tokens", "16", "--output-dir", str(out),
                             "--device", "cpu"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["pages"] == len(pages[1])
    assert metrics["token_limit_rate"] == 1.0  # 16 tokens is too few for any page
    assert len((out / "predictions.jsonl").read_text().splitlines()) == len(pages[1])
    report = (out / "report.md").read_text()
    assert "| model | evaluate |" in report
    assert f"- data: `--pages`: `{pages[1].root}`" in report
    assert f"- loaded: `{pages[1].root}` (eval): {len(pages[1])} rows, 0 skipped; {len(pages[1])} used, 0 fixed; " \
           f"format pages" in report
    assert "- command: `python -m dharma_train.evaluation --model" in report


def test_pages_that_lost_most_rows_stop_before_any_model_loads(tmp_path, tiny_artifact):
    rows = [{"id": "a", "image": "a.png", "text": "a"}] + [{"id": f"b{i}", "image": "none.png", "text": "b"}
                                                           for i in range(2)]
    Image.new("RGB", (40, 30), "white").save(tmp_path / "a.png")
    (tmp_path / "rows.jsonl").write_text("\n".join(json.dumps(row) for row in rows))
    result = subprocess.run([sys.executable, "-m", "dharma_train.evaluation", "--model", tiny_artifact.path,
                             "--pages", str(tmp_path / "rows.jsonl"), "--output-dir", str(tmp_path / "eval"),
                             "--device", "cpu"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    error = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert error == [f"error: {tmp_path / 'rows.jsonl'} (the eval pages) lost 2 of its 3 rows (67%: missing_file 2), "
                     f"more than the 50% allowed (data.max_skipped_share, --max-skipped-share); fix the data (every "
                     f"skipped row is in {tmp_path / 'eval' / 'pages' / 'load_report.json'}) or raise the share"]
    assert not (tmp_path / "eval" / "metrics.json").exists()


def test_missing_model_is_one_clear_error(tmp_path):
    result = subprocess.run([sys.executable, "-m", "dharma_train.evaluation", "--model", str(tmp_path / "none")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "does not exist" in result.stderr and "Traceback" not in result.stderr
