"""The paper's key effect on the tiny model: SFT that loops, mined loops as rejected answers, DPO, fewer loops.

A 20-step SFT leaves the tiny model looping to the token bound on every held-out page. DPO on its own mined
loops (with TRL's SFT term on the chosen answers, weight 1) must cut the held-out degeneration rate by a clear
margin without the quality score collapsing. Deterministic on a CPU: same seed, same numbers.
"""

import json

import pytest

from dharma_train import (
    DPOStage,
    DPOStageConfig,
    EvalConfig,
    OptimizationConfig,
    SFTStage,
    SFTStageConfig,
    StageContext,
    TrainerConfig,
    evaluate,
    generate_splits,
)
from dharma_train.data.pairs import load_pairs
from dharma_train.models.loading import load_model, load_processor
from dharma_train.stages.mining import MiningConfig

CONTEXT = StageContext(trainer=TrainerConfig(device="cpu", precision="fp32", logging_steps=50))
EVAL = EvalConfig(max_new_tokens=96, batch_size=16)


def _evaluate(artifact, pages):
    return evaluate(load_model(artifact), load_processor(artifact.path), pages, EVAL, progress=False)


@pytest.mark.slow
def test_dpo_on_mined_loops_cuts_degeneration(tiny_artifact, tmp_path):
    train, held_out = generate_splits(tmp_path / "data", n_train=32, n_eval=16, seed=0)
    full = dict(method="full", freeze_vision=False, batch_size=8)
    looping = SFTStage("short_sft", SFTStageConfig(optimization=OptimizationConfig(
        learning_rate=3e-3, max_steps=20, **full))).run(tiny_artifact, train, tmp_path / "sft", CONTEXT)
    before = _evaluate(looping.artifact, held_out)
    assert before["degeneration_rate"] >= 0.5, "the short SFT run should leave a looping model"

    mining = MiningConfig(samples_per_page=1, max_new_tokens=96, batch_size=16, reasons=["degenerate"], min_pairs=4)
    dpo = DPOStage("dpo", DPOStageConfig(pairs="mined", mining=mining, sft_loss_weight=1.0,
                                         optimization=OptimizationConfig(learning_rate=3e-3, max_steps=40, **full)))
    result = dpo.run(looping.artifact, train, tmp_path / "dpo", CONTEXT)
    pairs = load_pairs(tmp_path / "dpo")
    assert len(pairs) >= 16 and {pair.reason for pair in pairs} == {"degenerate"}
    assert json.loads((tmp_path / "dpo" / "pairs_summary.json").read_text())["mining"]["pairs_by_reason"] == {
        "degenerate": len(pairs)}

    after = _evaluate(result.artifact, held_out)
    keys = ("degeneration_rate", "quality_score", "cer", "json_valid_rate")
    print(f"\npairs {len(pairs)}; before DPO {[round(before[k], 3) for k in keys]}; "
          f"after DPO {[round(after[k], 3) for k in keys]} ({', '.join(keys)})")
    assert after["degeneration_rate"] <= before["degeneration_rate"] - 0.4, (before, after)
    assert after["quality_score"] >= 0.8 * before["quality_score"], (before, after)
