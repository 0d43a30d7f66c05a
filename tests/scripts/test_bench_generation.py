"""scripts/benchmarks/bench_generation.py: its engine rows and agreement check run end to end (tiny model, CPU)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]  # python -m scripts.benchmarks.bench_generation runs from the checkout root


@pytest.mark.slow  # 10 to 70 s on this 2-core machine: a subprocess that builds the tiny model in a fresh cache
def test_bench_generation_runs_its_issue_32_rows_on_the_tiny_model(tmp_path):
    command = [sys.executable, "-m", "scripts.benchmarks.bench_generation", "--shape", "tiny", "--device", "cpu",
               "--pages", "6", "--new-tokens", "8", "--sections",
               "baseline,agreement,continuous_8,whole_prompts_64,masked_64", "--out", str(tmp_path)]
    subprocess.run(command, check=True, capture_output=True, cwd=ROOT, timeout=600)
    report = json.loads((tmp_path / "bench_generation.json").read_text())
    assert not report["notes"], report["notes"]  # no section failed
    rows = {row["config"]: row for row in report["rows"]}
    assert len(rows) == 4 and all(row["new_tokens"] == 6 * 8 for row in rows.values())
    assert rows["64 slots, whole prompts (prefill_chunk_tokens=0)"]["mixed_steps"] == 1  # every prompt in one step
    for name in ("greedy_agreement_3b", "greedy_agreement_chunks_of_640"):
        assert report[name]["identical"] == 6
