"""scripts/benchmarks/bench_mining.py: DPO pair mining on the looping Hub-layout model, every path."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]  # python -m scripts.benchmarks.bench_mining runs from the checkout root


@pytest.mark.slow
def test_bench_mining_gets_the_same_pairs_from_every_path(tmp_path):
    """On the tiny looping folder, on the CPU: every mining path yields the same pairs."""
    command = [sys.executable, "-m", "scripts.benchmarks.bench_mining", "--shape", "tiny", "--device", "cpu", "--pages", "2",
               "--max-new-tokens", "96", "--width", "112", "--height", "112", "--batch", "2", "--out", str(tmp_path)]
    subprocess.run(command, check=True, capture_output=True, cwd=ROOT, timeout=600)
    report = json.loads((tmp_path / "bench_mining.json").read_text())
    assert [row["config"] for row in report["rows"]] == ["generate", "continuous", "continuous_loop_stop"]
    assert all(row["pairs"] == 2 and row["same_pairs_as_first_row"] for row in report["rows"])
    assert all(row["pairs_by_reason"] == {"degenerate": 2} for row in report["rows"])
