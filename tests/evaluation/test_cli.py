"""`python -m dharma_train.evaluation` on a saved model and on the embedded one, offline."""

import json
import subprocess
import sys


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
    assert "| model | evaluate |" in (out / "report.md").read_text()


def test_missing_model_is_one_clear_error(tmp_path):
    result = subprocess.run([sys.executable, "-m", "dharma_train.evaluation", "--model", str(tmp_path / "none")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "does not exist" in result.stderr and "Traceback" not in result.stderr
