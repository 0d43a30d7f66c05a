"""The stage gate: a stage that makes the model worse is rejected (keep_best), warned about, or stops the run."""

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from dharma_train import (
    EvalConfig,
    ModelArtifact,
    PageSet,
    Pipeline,
    SFTStage,
    SFTStageConfig,
    Stage,
    StageContext,
    StageResult,
    TrainerConfig,
)
from dharma_train.gate import GateConfig, StageRegressed, regressions, verdict
from dharma_train.training.config import OptimizationConfig

GOOD = {"quality_score": 0.30, "json_valid_rate": 1.0, "degeneration_rate": 0.0, "cer": 0.8}


def test_a_drop_beyond_its_tolerance_is_a_regression_and_within_it_is_not():
    config = GateConfig()
    assert regressions("dpo", {**GOOD, "quality_score": 0.295}, GOOD, config) == []
    assert regressions("dpo", {**GOOD, "quality_score": 0.159, "json_valid_rate": 0.0}, GOOD, config) == [
        "quality 0.300 -> 0.159 (tolerance 0.010)", "JSON valid 100% -> 0% (tolerance 2%)"]
    assert regressions("dpo", {**GOOD, "degeneration_rate": 0.0625}, GOOD, config) == [
        "degeneration 0.0% -> 6.2% (tolerance 0.0%)"], "lower is better for degeneration"
    assert regressions("dpo", {**GOOD, "quality_score": 0.9, "degeneration_rate": 0.0}, GOOD, config) == []


def test_quantize_is_judged_on_the_quality_it_costs():
    config = GateConfig(quantize_tolerance={"quality_score": 0.05})
    cheaper = {**GOOD, "quality_score": 0.26, "json_valid_rate": 0.5}
    assert regressions("quantize", cheaper, GOOD, config) == [], "only quantize's own criteria apply to it"
    assert regressions("dpo", cheaper, GOOD, config) != []
    assert regressions("quantize", {**GOOD, "quality_score": 0.237}, GOOD, config) == [
        "quality 0.300 -> 0.237 (tolerance 0.050)"]


def test_the_verdict_follows_on_regression_and_exempt_stages_are_never_rejected():
    best = {"stage": "structured", "metrics": GOOD}
    worse = {**GOOD, "quality_score": 0.1}
    assert verdict("dpo", "dpo", worse, best, GateConfig()).outcome == "rejected"
    assert verdict("dpo", "dpo", worse, best, GateConfig(on_regression="warn")).outcome == "warned"
    assert verdict("dpo", "dpo", worse, best, GateConfig(exempt=["dpo"])).to_dict() == {
        "verdict": "kept", "against": "structured", "regressions": [], "exempt": True}


def test_every_reader_reads_a_verdict_the_same_way_including_an_older_summarys_skipped_stage():
    """One typed reading of summary.json's `gate` (report, model card and comparison use it): what the pipeline
    writes reads back as itself, and a skipped stage an older summary recorded only in its train record is skipped."""
    from dharma_train.gate import BASE, Verdict, passed_on

    kept = verdict("dpo", "dpo", GOOD, {"stage": "structured", "metrics": GOOD}, GateConfig())
    assert Verdict.of({"gate": kept.to_dict()}) == kept and kept.gated
    assert Verdict.of({"gate": BASE.to_dict()}) == BASE and not BASE.gated
    skipped = passed_on("dpo", "dpo", {"stage": "structured", "model": "m", "metrics": GOOD}, {"skipped": "0 pairs"})
    assert Verdict.of(skipped) == Verdict("skipped", against="structured", reason="0 pairs")
    older = {"gate": {"verdict": "kept", "against": "structured", "regressions": []}, "train": {"skipped": "0 pairs"}}
    assert (Verdict.of(older).outcome, Verdict.of(older).reason) == ("skipped", "0 pairs")
    assert Verdict.of({"stage": "no gate"}).outcome == "" and not Verdict.of({}).gated


def test_bad_gate_settings_name_their_key():
    with pytest.raises(ValueError, match="pipeline.on_regression"):
        GateConfig(on_regression="ignore")
    with pytest.raises(ValueError, match=r"pipeline.tolerance.bleu: not a gate criterion"):
        GateConfig(tolerance={"bleu": 0.1})


@dataclass
class AddNoise(Stage):
    """Ruins a model on purpose: its weights plus loud Gaussian noise (what a broken DPO stage looks like)."""

    name: str = "ruin"
    kind = "dpo"

    def run(self, model: ModelArtifact, pages: PageSet, output_dir: Path, context: StageContext) -> StageResult:
        import torch
        from safetensors.torch import load_file, save_file

        target = output_dir / "model"
        shutil.copytree(model.path, target)
        weights = target / "model.safetensors"
        tensors = load_file(weights)
        generator = torch.Generator().manual_seed(0)
        noisy = {k: v + v.float().std() * 3 * torch.randn(v.shape, generator=generator) if v.is_floating_point()
                 and v.dim() == 2 else v for k, v in tensors.items()}
        save_file({k: v.contiguous() for k, v in noisy.items()}, weights, metadata={"format": "pt"})
        return StageResult(self.name, ModelArtifact(path=str(target)), {})


@dataclass
class RecordInput(Stage):
    """Passes its input on and remembers which model it was given."""

    name: str = "after"
    seen: list = field(default_factory=list)

    def run(self, model: ModelArtifact, pages: PageSet, output_dir: Path, context: StageContext) -> StageResult:
        self.seen.append(model.path)
        return StageResult(self.name, model, {})


def _pipeline(stages, **gate):
    return Pipeline(stages=stages, evaluation=EvalConfig(max_new_tokens=160, batch_size=4),
                    context=StageContext(trainer=TrainerConfig(device="cpu", checkpoint_every=0), run_name="gated"),
                    gate=GateConfig(**gate))


@pytest.mark.slow
def test_a_regressing_stage_is_rejected_and_the_run_goes_on_from_the_best_model(tiny_artifact, pages, tmp_path):
    """keep_best, then the same folder again with warn and fail: the finished stages are reused and re-judged."""
    train, eval_pages = pages
    sft = SFTStage("structured", SFTStageConfig(optimization=OptimizationConfig(
        method="full", freeze_vision=False, learning_rate=3e-3, max_steps=120, batch_size=8, warmup=0.05)))
    after = RecordInput()
    summary = _pipeline([sft, AddNoise(), after]).run(tiny_artifact, train, eval_pages, tmp_path)
    base, structured, ruin, kept = summary["entries"]
    assert structured["metrics"]["json_valid_rate"] == 1.0, "precondition: the short SFT writes valid JSON"
    assert ruin["metrics"]["quality_score"] < structured["metrics"]["quality_score"] - 0.01
    assert [e["gate"]["verdict"] for e in summary["entries"]] == ["base", "kept", "rejected", "kept"]
    assert ruin["gate"]["against"] == "structured" and ruin["gate"]["regressions"]
    assert after.seen == [structured["model"]], "the stage after a rejected one starts from the best model"
    assert kept["gate"]["against"] == "structured" and summary["final_point"] == "after"
    written = json.loads((tmp_path / "summary.json").read_text())
    assert [e["gate"]["verdict"] for e in written["entries"]] == ["base", "kept", "rejected", "kept"]
    report = (tmp_path / "report.md").read_text()
    assert "rejected ruin" in report and "**stage ruin REJECTED: worse than structured on quality" in report
    assert "| ruin | dpo | **rejected** |" in report

    warned = _pipeline([sft, AddNoise(), RecordInput()], on_regression="warn").run(
        tiny_artifact, train, eval_pages, tmp_path)
    assert [e["gate"]["verdict"] for e in warned["entries"]] == ["base", "kept", "warned", "kept"]
    assert warned["entries"][-1]["gate"]["against"] == "ruin", "warn: the run went on from the regressed model"
    assert warned["final_point"] == "after" and warned["entries"][-1]["model"] == ruin["model"]

    with pytest.raises(StageRegressed,
                       match=r"stage ruin REJECTED: worse than structured on quality.*on_regression=fail stops the run"):
        _pipeline([sft, AddNoise(), RecordInput()], on_regression="fail").run(
            tiny_artifact, train, eval_pages, tmp_path)
    assert [e["gate"]["verdict"] for e in json.loads((tmp_path / "summary.json").read_text())["entries"]] == [
        "base", "kept", "rejected"], "the failing verdict is recorded before the run stops"
