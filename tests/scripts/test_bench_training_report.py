"""The training benchmark's loss check pairs each compiled or master-weights row with the eager row with fp32
parameters that trained the same batches; plan=previous makes such a row."""

import pytest

from scripts.benchmarks.bench_training import parse_config, print_loss_check


def _row(config, compiled, losses, policy="keep_4", budget=4971, masters=None):
    applied = {"compile": compiled} if compiled else {}
    if masters:
        applied["master_weights"] = masters
    return {"config": config, "path": "ours", "method": "full", "token_budget": budget, "gradient_accumulation": 3,
            "recompute": {"policy": policy}, "applied": applied, "losses": losses}


def test_compiled_losses_are_compared_with_the_eager_row_of_the_same_plan(capsys):
    eager = _row("ours-full:compile=off", None, [12.42, 10.98, 10.27], masters="model")
    print_loss_check([eager, _row("ours-full", "on", [12.42, 10.98, 10.271]),
                      _row("ours-full:x", "on", [12.42, 10.9, 10.27]),
                      _row("ours-full:y", "on", [12.42], policy="off"),
                      _row("ours-full:master_weights=optimizer", "off (a reason)", [12.42, 10.98, 10.27],
                           masters="optimizer")])
    lines = capsys.readouterr().out.splitlines()
    assert "ours-full (compiled) against ours-full:compile=off (eager)" in lines[0]
    assert "(equal to 3 digits)" in lines[0]
    assert "ours-full:x (compiled)" in lines[5] and "NOT equal" in lines[5]
    assert lines[10].startswith("losses, ours-full:y (compiled): [12.42]; no eager row with fp32 parameters")
    assert "ours-full:master_weights=optimizer (fp32 copies in the optimizer) against ours-full:compile=off" \
        in lines[11]


def test_plan_previous_repeats_the_plan_the_row_before_chose():
    previous = _row("ours-full:master_weights=optimizer", "on", [1.0], policy="keep_3", budget=7000)
    _, spec = parse_config("ours-full:compile=off,plan=previous", previous)
    assert spec["accumulation"] == 3
    assert spec["performance"] == {"compile": "off", "token_budget": "7000", "recompute": "keep_3"}
    _, fixed = parse_config("ours-lora:plan=previous", {**previous, "token_budget": None})
    assert fixed["performance"]["token_budget"] == "off"
    with pytest.raises(SystemExit, match="needs a row of ours"):
        parse_config("ours-full:plan=previous", None)
