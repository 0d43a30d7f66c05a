"""run_folder.py: the layout every reader and writer of a run folder uses is the one a run writes."""

from dataclasses import dataclass
from pathlib import Path

from dharma_train import EvalConfig, ModelArtifact, PageSet, Pipeline, Stage, StageContext, StageResult, TrainerConfig
from dharma_train.reporting.comparison import read_summary
from dharma_train.run_folder import MANIFEST, METRICS, PREDICTIONS, RunFolder


@dataclass
class PassOn(Stage):
    name: str

    def run(self, model: ModelArtifact, pages: PageSet, output_dir: Path, context: StageContext) -> StageResult:
        return StageResult(self.name, model, {})


def test_a_pipeline_writes_where_the_layout_says(tiny_artifact, pages, tmp_path):
    train, eval_pages = pages
    Pipeline(stages=[PassOn("first"), PassOn("second")], evaluation=EvalConfig(max_new_tokens=2, batch_size=4),
             context=StageContext(trainer=TrainerConfig(device="cpu"))).run(tiny_artifact, train, eval_pages, tmp_path)
    layout = RunFolder(tmp_path)
    assert layout.summary.is_file() and layout.report.is_file()
    assert [entry["stage"] for entry in read_summary(tmp_path)["entries"]] == ["base", "first", "second"]
    for point in (layout.base, layout.point(1, "first"), layout.point(2, "second")):
        assert all((point / name).is_file() for name in (MANIFEST, METRICS, PREDICTIONS)), point
    assert layout.stage_pairs("dpo") == tmp_path / "data" / "stages" / "dpo" / "pairs"
