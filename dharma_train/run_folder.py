"""A run folder's layout, spelled once: every module that writes or reads a run's files asks here where they are.

    output_dir/
      run.json  summary.json  report.md  scores.png  degeneration.png   (comparison.md/.csv for an ablation)
      data/           train/, eval/ (pages.jsonl + images, generation.json when generated), a generated set per
                      name, stages/NAME/ (own pages and stages/NAME/pairs/ given pairs, as the run loaded them),
                      load_report.json
      00_base/        manifest.json, metrics.json, predictions.jsonl
      NN_name/        manifest.json (written last: finished), attempt.json, stage.json, metrics.json,
                      predictions.jsonl, model/ (or adapter/), trainer/ (checkpoints while it trains)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

RUN_RECORD = "run.json"
SUMMARY = "summary.json"
REPORT = "report.md"
COMPARISON_MD, COMPARISON_CSV = "comparison.md", "comparison.csv"
DATA = "data"  # a base of an ablation may not take this name (its folder sits beside it)
MANIFEST = "manifest.json"  # written last: the point is finished
ATTEMPT = "attempt.json"  # written when a stage starts: what an interrupted attempt may resume with
STAGE_RECORD = "stage.json"
METRICS = "metrics.json"
PREDICTIONS = "predictions.jsonl"
GENERATION_FILE = "generation.json"  # beside generated pages: the settings they were drawn with (written last)


@dataclass(frozen=True)
class RunFolder:
    """Where each file of one run lives (a run folder, or one base's folder inside an ablation's)."""

    root: Path

    def __post_init__(self):
        object.__setattr__(self, "root", Path(self.root))

    @property
    def summary(self) -> Path:
        return self.root / SUMMARY

    @property
    def report(self) -> Path:
        return self.root / REPORT

    @property
    def run_record(self) -> Path:
        return self.root / RUN_RECORD

    @property
    def data(self) -> Path:
        return self.root / DATA

    def point(self, index: int, name: str) -> Path:
        """A point's folder: 00_base, then NN_<stage> in run order."""
        return self.root / f"{index:02d}_{name}"

    @property
    def base(self) -> Path:
        return self.point(0, "base")

    def generated_set(self, name: str) -> Path:
        """A named page set generated for the run (`general`)."""
        return self.data / name

    def stage_data(self, stage: str) -> Path:
        """A stage's own pages, loaded through the run's checks."""
        return self.data / "stages" / stage

    def stage_pairs(self, stage: str) -> Path:
        """A stage's given preference pairs, loaded through the run's checks."""
        return self.stage_data(stage) / "pairs"
