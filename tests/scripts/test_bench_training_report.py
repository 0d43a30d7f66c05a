"""The training benchmark's loss check pairs each compiled row with the eager row that trained the same batches."""

from scripts.benchmarks.bench_training import print_loss_check


def _row(config, compiled, losses, policy="keep_4", budget=4971):
    return {"config": config, "path": "ours", "method": "full", "token_budget": budget, "gradient_accumulation": 3,
            "recompute": {"policy": policy}, "applied": {"compile": compiled} if compiled else {}, "losses": losses}


def test_compiled_losses_are_compared_with_the_eager_row_of_the_same_plan(capsys):
    eager = _row("ours-full:compile=off", None, [12.42, 10.98, 10.27])
    print_loss_check([eager, _row("ours-full", "on", [12.42, 10.98, 10.271]),
                      _row("ours-full:x", "on", [12.42, 10.9, 10.27]),
                      _row("ours-full:y", "on", [12.42], policy="off")])
    lines = capsys.readouterr().out.splitlines()
    assert "ours-full (compiled) against ours-full:compile=off (eager)" in lines[0]
    assert "(equal to 3 digits)" in lines[0]
    assert "ours-full:x (compiled)" in lines[5] and "NOT equal" in lines[5]
    assert lines[10] == "losses, ours-full:y (compiled): [12.42]; no eager row with the same plan"
