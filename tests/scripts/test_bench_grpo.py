"""scripts/benchmarks/bench_grpo.py: GRPO's sampling through TRL's generate and through the continuous engine."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]  # python -m scripts.benchmarks.bench_grpo runs from the checkout root


@pytest.mark.slow
def test_bench_grpo_times_the_sampling_of_both_engines_through_the_stage(tmp_path):
    """On the tiny Hub-layout folder, on the CPU: a row per engine, every answer sampled and timed."""
    command = [sys.executable, "-m", "scripts.benchmarks.bench_grpo", "--shape", "tiny", "--device", "cpu",
               "--steps", "2", "--generations", "2", "--pages-per-step", "2", "--max-new-tokens", "8",
               "--width", "112", "--height", "112", "--out", str(tmp_path)]
    subprocess.run(command, check=True, capture_output=True, cwd=ROOT, timeout=600)
    report = json.loads((tmp_path / "bench_grpo.json").read_text())
    assert [row["engine"] for row in report["rows"]] == ["generate", "continuous"]
    for row in report["rows"]:
        assert len(row["sampling_seconds_per_step"]) == 2 and row["answers"] == 8
        assert row["hit_token_limit"] == 8  # a random model never ends within 8 tokens
