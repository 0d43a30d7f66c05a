"""scripts/experiments/experiment_dpo.py end to end at its --quick size: a sweep setting, the control arms, the tables."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]  # python -m scripts.experiments.experiment_dpo runs from the checkout root


def _run(*args, env):
    result = subprocess.run([sys.executable, "-m", "scripts.experiments.experiment_dpo", *args], capture_output=True,
                            text=True, env=env, cwd=ROOT, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


@pytest.mark.slow
def test_sweep_control_and_tables_run_at_quick_size(tmp_path, tiny_cache):
    env = {**os.environ, "DHARMA_TRAIN_CACHE": str(tiny_cache)}
    _run("sweep", "--quick", "--seed", "0", "--work", str(tmp_path / "sweep-cpu-0"), "--only", "recipe", env=env)
    _run("control", "--quick", "--seed", "0", "--work", str(tmp_path / "control-cpu-tiny-0"), env=env)
    tables = _run("tables", "--work", str(tmp_path), "--out", str(tmp_path / "tables"), env=env).stdout
    sweep = json.loads((tmp_path / "sweep-cpu-0" / "sweep-recipe.json").read_text())
    assert sweep["settings"]["recipe"]["gate"] in ("kept", "rejected", "skipped")
    assert "| cpu | recipe | 1 |" in tables and "## Control (tiny model)" in tables
    assert {"a_dpo", "b_dpo_sft", "c_sft_chosen", "d_no_training"} >= set(
        json.loads((tmp_path / "control-cpu-tiny-0" / "control.json").read_text())["arms"]) >= {"d_no_training"}
    assert (tmp_path / "tables" / "results.csv").is_file()
