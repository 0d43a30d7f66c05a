"""The OCR-rung experiment script (docs/experiments/ocr-rung.md) end to end at its smoke scale, on the real stages."""

import csv
import json

import pytest

from scripts.experiments import experiment_ocr_rung


@pytest.mark.slow
def test_every_arm_starts_from_one_base_and_compare_writes_the_table_and_means(tmp_path):
    experiment = experiment_ocr_rung
    work, out = tmp_path / "work", tmp_path / "results"
    experiment.main(["prepare", "--seed", "0", "--scale", "smoke", "--work", str(work)])
    for arm in experiment.ARMS:
        experiment.main(["arm", "--arm", arm, "--seed", "0", "--scale", "smoke", "--work", str(work)])
    experiment.main(["compare", "--work", str(work), "--out", str(out)])

    rows = list(csv.DictReader((out / "comparison.csv").open()))
    points = {(row["base"], row["stage"]) for row in rows}
    assert ("with_rung seed0", "general_ocr") in points
    assert ("no_rung seed0", "general_ocr") not in points
    assert all((f"{arm} seed0", "dpo") in points for arm in experiment.ARMS)
    base_scores = {row["quality"] for row in rows if row["stage"] == "base"}
    assert len(base_scores) == 1, "every arm of a seed is evaluated from the same pretrained base"

    means = (out / "arm_means.md").read_text()
    assert "(1 seeds;" in means and "| no_rung | quality |" in means
    with_rung_dpo = next(float(r["quality"]) for r in rows if r["base"] == "with_rung seed0" and r["stage"] == "dpo")
    assert f"{with_rung_dpo:.3f} (n=1)" in means
    assert (out / "arm_means_scores.png").stat().st_size > 0
    timings = json.loads((out / "timings.json").read_text())
    assert set(timings["arms"]) == {f"{arm} seed0" for arm in experiment.ARMS}
    assert timings["prepared"]["seed0"]["parameters"] > 0
