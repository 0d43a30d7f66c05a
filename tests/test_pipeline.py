"""The Pipeline with a user-written stage: the Stage protocol, evaluation after each stage, summary and report."""

import json
from dataclasses import dataclass
from pathlib import Path

from dharma_train import EvalConfig, ModelArtifact, PageSet, Pipeline, StageContext, StageResult, TrainerConfig


@dataclass
class KeepModel:
    """A stage that changes nothing: its evaluation must equal the base's."""

    name: str
    checked: bool = False

    def check(self) -> None:
        self.checked = True

    def run(self, model: ModelArtifact, pages: PageSet, output_dir: Path, context: StageContext) -> StageResult:
        return StageResult(self.name, model, {"train_loss": 0.0, "pages_seen": len(pages)})


def test_custom_stage_runs_between_evaluations(tiny_artifact, pages, tmp_path):
    train, eval_pages = pages
    stage = KeepModel("noop")
    pipeline = Pipeline(stages=[stage], evaluation=EvalConfig(max_new_tokens=8, batch_size=4),
                        context=StageContext(trainer=TrainerConfig(device="cpu"), run_name="custom"))
    summary = pipeline.run(tiny_artifact, train, eval_pages, tmp_path)
    assert stage.checked
    base, noop = summary["entries"]
    assert (base["stage"], noop["stage"]) == ("base", "noop")
    assert base["metrics"]["cer"] == noop["metrics"]["cer"]  # same model, greedy decoding: same outputs
    assert noop["train"]["pages_seen"] == len(train)
    assert json.loads((tmp_path / "summary.json").read_text()) == json.loads(json.dumps(summary, default=str))
    report = (tmp_path / "report.md").read_text()
    assert "| noop | KeepModel |" in report and "+0.000" in report
    predictions = (tmp_path / "01_noop" / "predictions.jsonl").read_text().splitlines()
    assert len(predictions) == len(eval_pages)
    assert all(json.loads(line)["hit_token_limit"] for line in predictions)  # 8 tokens: every output is cut
