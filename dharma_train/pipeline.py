"""A Pipeline runs stages in order and evaluates the base model and every stage's output the same way."""

from __future__ import annotations

import gc
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from dharma_train.artifact import ModelArtifact
from dharma_train.data.pages import PageSet, load_pages
from dharma_train.files import write_json_atomically
from dharma_train.evaluation.hook import EvalConfig, evaluate
from dharma_train.plots import plot_run
from dharma_train.report import write_report
from dharma_train.stage import Stage, StageContext
from dharma_train.tracking import EvaluationLog

log = logging.getLogger(__name__)


@dataclass
class Pipeline:
    stages: list[Stage]
    evaluation: EvalConfig = field(default_factory=EvalConfig)
    context: StageContext = field(default_factory=StageContext)

    def run(self, base: ModelArtifact, train: PageSet, eval_pages: PageSet, output_dir: str | Path) -> dict:
        """Evaluate the base, then train and evaluate each stage; summary.json and report.md grow after each point."""
        output_dir = Path(output_dir)
        output_dir.mkdir(parents=True, exist_ok=True)
        stage_pages = self._stage_pages(train)  # loaded first: a bad data path fails before any model loads
        for stage in self.stages:
            if hasattr(stage, "check"):
                stage.check()
        summary = {"run": self.context.run_name, "evaluation": asdict(self.evaluation), "entries": []}
        tracker = EvaluationLog(self.context.tracking, self.context.run_name, str(output_dir))
        try:
            total = len(self.stages)
            log.info("[0/%d] evaluating the base model %s", total, base.path)
            self._record(summary, tracker, self._evaluate("base", "base", base, eval_pages, output_dir / "00_base", {}),
                         output_dir)
            current = base
            for index, stage in enumerate(self.stages, start=1):
                stage_dir = output_dir / f"{index:02d}_{stage.name}"
                stage_dir.mkdir(parents=True, exist_ok=True)
                kind = getattr(stage, "kind", type(stage).__name__)
                log.info("[%d/%d] stage %s (%s) from %s", index, total, stage.name, kind, current.path)
                started = time.perf_counter()
                result = stage.run(current, stage_pages[stage.name], stage_dir, self.context)
                train = {**result.metrics, "wall_seconds": time.perf_counter() - started}
                current = result.artifact
                if not getattr(stage, "evaluates_output", True):  # same weights as the point before (export)
                    summary.setdefault("not_evaluated", []).append(
                        {"stage": stage.name, "kind": kind, "model": current.path, "train": train})
                    self._write(summary, output_dir)
                    continue
                log.info("[%d/%d] evaluating %s", index, total, stage.name)
                self._record(summary, tracker, self._evaluate(stage.name, kind, current, eval_pages, stage_dir, train),
                             output_dir)
        finally:
            tracker.close()
        return summary

    def _stage_pages(self, train: PageSet) -> dict[str, PageSet]:
        pages = {}
        for stage in self.stages:
            own = getattr(getattr(stage, "config", None), "data", None)
            pages[stage.name] = load_pages(own) if own else train
        return pages

    def _evaluate(self, name: str, kind: str, artifact: ModelArtifact, pages: PageSet, folder: Path,
                  train: dict) -> dict:
        from dharma_train.models.loading import load_model, load_processor

        settings = self.context.model
        model = load_model(artifact, dtype=self.context.trainer.model_dtype(), settings=settings,
                           device=self.context.trainer.resolved_device())
        processor = load_processor(artifact.processor_location, settings.min_pixels, settings.max_pixels)
        metrics = evaluate(model, processor, pages, self.evaluation, output_dir=folder)
        size = artifact.weights_bytes()
        metrics["weights_megabytes"] = None if size is None else size / 1e6
        del model
        gc.collect()
        write_json_atomically(folder / "metrics.json", metrics)
        return {"stage": name, "kind": kind, "model": artifact.path, "artifact": artifact.to_dict(),
                "metrics": metrics, "train": train}

    @staticmethod
    def _record(summary: dict, tracker: EvaluationLog, entry: dict, output_dir: Path) -> None:
        """Append a point, then rewrite summary.json, the plots and report.md, and log it."""
        summary["entries"].append(entry)
        tracker.log(len(summary["entries"]) - 1, entry["stage"], entry["metrics"])
        Pipeline._write(summary, output_dir)

    @staticmethod
    def _write(summary: dict, output_dir: Path) -> None:
        write_json_atomically(output_dir / "summary.json", summary)
        write_report(summary, output_dir / "report.md", plots=plot_run(summary, output_dir))
