"""The tiny recipe with its GRPO rung switched on, in place of DPO, through `python -m dharma_train` as users run it:
sampled through the continuous engine, gated, evaluated, reported (reward curves per term in report.md, a plot and
the model card), exported."""

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow

SMALL = ["data.synthetic.train_pages=8", "data.synthetic.eval_pages=2", "stages.general_ocr=null",
         "stages.structured.optimization.max_steps=2", "stages.grpo.optimization.max_steps=2",
         "stages.quantize=null", "evaluation.max_new_tokens=16", "trainer.logging_steps=1",
         "stages.grpo.engine=continuous"]  # what `auto` picks on a GPU; on a CPU it picks TRL's model.generate


def test_the_tiny_recipe_runs_grpo_in_place_of_dpo_end_to_end(tmp_path):
    out = tmp_path / "run"
    result = subprocess.run([sys.executable, "-m", "dharma_train", "recipe=tiny_random", "stages.grpo.enabled=true",
                             "stages.dpo=null", *SMALL, f"output_dir={out}"], cwd=tmp_path, capture_output=True,
                            text=True, timeout=600, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert [entry["stage"] for entry in summary["entries"]] == ["base", "structured", "grpo"]
    grpo = summary["entries"][-1]
    assert grpo["kind"] == "grpo" and grpo["gate"]["verdict"] in ("kept", "rejected")
    record = grpo["train"]["grpo"]
    assert (record["answers"], record["groups"], record["curves"]["step"]) == (16, 4, [1, 2])
    report = (out / "report.md").read_text()
    assert "## GRPO rewards" in report and "![grpo_rewards](grpo_rewards.png)" in report
    assert (out / "grpo_rewards.png").stat().st_size > 0
    card = (out / "03_export" / "model" / "README.md").read_text()
    assert "GRPO's rewards" in card and "| grpo | 4 |" in card
    log = (out / "__main__.log").read_text()
    assert "grpo: 4 groups of answers sampled" in log
    assert "grpo: the continuous engine sampled 16 answers, encoding 4 page images" in log
