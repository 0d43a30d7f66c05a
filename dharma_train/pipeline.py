"""A Pipeline runs stages in order and evaluates the base model and every stage's output the same way.

Each evaluated stage passes the gate (gate.py) or is rejected: with `keep_best` the next stage starts from the
best model so far, so what the run carries on from, and exports, is never worse than what it had. A stage that
passes its input on untrained (its StageResult says `skipped`, and why) is logged and recorded as `skipped` with
the metrics of the point it passed on: the same weights are not evaluated a second time.

Run again into the same output folder, it reuses every point whose inputs are unchanged (its manifest says so,
see manifest.py), re-runs the first changed stage and every stage after it, and says which and why; a stage that
was interrupted resumes from its last checkpoint (trainer.resume=auto).
"""

from __future__ import annotations

import gc
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from dharma_train.artifact import ModelArtifact
from dharma_train.console import drop_library_notices, show_progress
from dharma_train.data.pages import PageSet
from dharma_train.distributed import is_main, on_main
from dharma_train.errors import ConfigError
from dharma_train.evaluation.hook import EvalConfig, evaluate
from dharma_train.files import write_json_atomically
from dharma_train.gate import BASE, GateConfig, StageRegressed, describe, passed_on, verdict
from dharma_train.manifest import (
    base_inputs,
    begin_attempt,
    damaged_manifest,
    evaluation_key,
    is_fresh,
    machine_note,
    new_manifest,
    pages_fingerprint,
    read_manifest,
    stage_inputs,
    stage_manifest,
    write_manifest,
)
from dharma_train.preflight import check_stages
from dharma_train.reporting.plots import plot_run
from dharma_train.reporting.report import write_report
from dharma_train.reporting.tracking import EvaluationLog, TrackingConfig
from dharma_train.run_folder import METRICS, RunFolder
from dharma_train.run_paths import run_relative
from dharma_train.stage import Stage, StageContext
from dharma_train.stages import mining_batch_of, optimization_of
from dharma_train.training.checkpoints import remove_checkpoints
from dharma_train.training.resources import evaluation_knobs, explain_out_of_memory, training_knobs

log = logging.getLogger(__name__)


@dataclass
class Pipeline:
    """Stages in order, each evaluated after it runs and kept only if the gate says it helped.

    `Pipeline(stages=[SFTStage("structured"), DPOStage("dpo")], evaluation=EvalConfig(max_new_tokens=512))
    .run(tiny_model(), train_pages, eval_pages, "outputs/mine")` returns the summary it writes to summary.json;
    run it again into the same folder to reuse what finished (see docs/python-api.md).
    """

    stages: list[Stage]
    evaluation: EvalConfig = field(default_factory=EvalConfig)
    context: StageContext = field(default_factory=StageContext)
    gate: GateConfig = field(default_factory=GateConfig)  # keep a stage only if it did not make the model worse

    def run(self, base: ModelArtifact, train: PageSet, eval_pages: PageSet, output_dir: str | Path,
            stage_pages: dict[str, PageSet] | None = None) -> dict:
        """Evaluate the base, then train and evaluate each stage; summary.json and report.md grow after each point.

        `stage_pages`: the pages of each stage that trains on its own (its config's `data`), by stage name; every
        other stage trains on `train`. Launched on several processes, every process runs this; rank 0 alone writes
        and tracks.
        """
        show_progress()  # the Python API's entry point: progress lines unless the script configured logging
        drop_library_notices()  # as the CLI does, before any stage imports llm-compressor
        check_stages(self.stages)
        output_dir = Path(output_dir)
        output_dir.mkdir(parents=True, exist_ok=True)
        layout = RunFolder(output_dir)
        stage_pages = self._stage_pages(train, stage_pages or {})
        for stage in self.stages:
            stage.check_pages(stage_pages[stage.name])
        resume = self.context.trainer.resume == "auto"
        fingerprints: dict[int, str] = {}

        def fingerprint(pages: PageSet) -> str:
            """Each page set is hashed once per run, however many stages train on it."""
            if id(pages) not in fingerprints:
                fingerprints[id(pages)] = pages_fingerprint(pages)
            return fingerprints[id(pages)]

        summary = {"run": self.context.run_name, "evaluation": asdict(self.evaluation), "gate": asdict(self.gate),
                   "entries": []}
        tracker = EvaluationLog(self.context.tracking if is_main() else TrackingConfig(), self.context.run_name,
                                str(output_dir))

        def evaluated(manifest: dict, folder: Path) -> dict:
            return self._evaluate_point(manifest, folder, eval_pages, fingerprint(eval_pages))

        try:
            total = len(self.stages)
            folder = layout.base
            inputs = base_inputs(base)
            manifest = _read_manifest(folder, resume)
            if manifest is None and resume and (damage := on_main(damaged_manifest, folder)):
                log.warning("%s: the base model's point is recorded again", damage)
            if manifest is None or manifest["inputs"] != inputs:
                manifest = _write_manifest(folder, new_manifest("base", "base", inputs, base, {}))
            log.info("[0/%d] base model %s", total, base.path)
            start = evaluated(manifest, folder)  # the point the next stage starts from and is judged against
            start["gate"] = BASE.to_dict()
            self._record(summary, tracker, start, output_dir, final=start["stage"])
            current, upstream, current_point, rerun = base, manifest["key"], start["stage"], None
            for index, stage in enumerate(self.stages, start=1):
                folder = layout.point(index, stage.name)
                kind = stage.kind
                pages = stage_pages[stage.name]
                inputs = stage_inputs(stage, self.context, upstream, fingerprint(pages))
                manifest = _read_manifest(folder, resume)
                damage = on_main(damaged_manifest, folder) if manifest is None and resume else None
                fresh, reason = is_fresh(manifest, inputs, damage) if rerun is None else \
                    (False, f"{rerun} before it re-ran")
                if fresh:
                    log.info("[%d/%d] stage %s: reused, %s", index, total, stage.name, reason)
                else:
                    log.info("[%d/%d] stage %s (%s): runs because %s (from %s)", index, total, stage.name, kind,
                             reason if resume else "trainer.resume=never", current_point)
                    manifest = self._train(stage, kind, current, pages, folder, inputs, resume)
                    rerun = stage.name
                produced, produced_key = ModelArtifact.from_dict(manifest["artifact"]), manifest["key"]
                if note := machine_note(stage.name, manifest, self.context.trainer.resolved_device()):
                    log.warning("%s", note)
                    summary.setdefault("notes", []).append(note)
                if skipped := manifest["train"].get("skipped"):
                    log.warning("[%d/%d] stage %s skipped: it passed %s on untrained because %s; not evaluated again",
                                index, total, stage.name, current_point, skipped)
                    current, upstream = produced, produced_key
                    self._record(summary, tracker, passed_on(stage.name, kind, start, manifest["train"]), output_dir,
                                 final=current_point)
                    continue
                if not stage.evaluates_output:  # the same weights as the point before (export): not evaluated again
                    current, upstream = produced, produced_key
                    summary.setdefault("not_evaluated", []).append(
                        {"stage": stage.name, "kind": kind, "model": current.path, "from": current_point,
                         "train": manifest["train"]})
                    if is_main():
                        self._write(summary, output_dir)
                    continue
                entry = evaluated(manifest, folder)
                judged = verdict(stage.name, kind, entry["metrics"], start, self.gate)
                entry["gate"] = judged.to_dict()
                outcome = judged.outcome
                if outcome != "rejected":
                    current, upstream, current_point, start = produced, produced_key, stage.name, entry
                self._record(summary, tracker, entry, output_dir, final=current_point)
                if outcome != "kept":
                    log.warning("%s", describe(entry))
                if outcome == "rejected" and self.gate.on_regression == "fail":
                    raise StageRegressed(f"{describe(entry)}: pipeline.on_regression=fail stops the run here "
                                         f"(keep_best would reject the stage and go on)")
        finally:
            tracker.close()
        return summary

    def _train(self, stage: Stage, kind: str, current: ModelArtifact, pages: PageSet, folder: Path, inputs: dict,
               resume: bool) -> dict:
        """Run a stage into its folder; its manifest, written last, marks it finished; then drop its checkpoints."""
        if on_main(begin_attempt, folder, inputs, resume):
            log.info("stage %s: an interrupted attempt with the same inputs left its work in %s; resuming",
                     stage.name, folder)
        started = time.perf_counter()
        knobs = training_knobs(stage.name, optimization_of(stage.config), mining_batch_of(stage.config), self.context)
        with explain_out_of_memory(f"in stage {stage.name}", knobs):
            result = stage.run(current, pages, folder, self.context)
        train = {**result.metrics, "wall_seconds": time.perf_counter() - started}
        if result.skipped:
            train["skipped"] = result.skipped
        manifest = _write_manifest(folder, on_main(stage_manifest, folder, stage.name, kind, inputs, result.artifact,
                                                   train))
        on_main(remove_checkpoints, folder)
        return manifest

    def _evaluate_point(self, manifest: dict, folder: Path, pages: PageSet, pages_key: str) -> dict:
        """Reuse the point's stored evaluation when nothing it depends on changed; otherwise evaluate and store it."""
        name, kind = manifest["point"], manifest["kind"]
        wanted = evaluation_key(self.evaluation, pages_key, self.context, manifest["key"])
        stored = manifest.get("evaluation")
        if stored and stored.get("key") == wanted:
            log.info("%s: evaluation reused (same model, pages and evaluation settings)", name)
            entry = stored["entry"]
        else:
            log.info("evaluating %s", name)
            artifact = ModelArtifact.from_dict(manifest["artifact"])
            with explain_out_of_memory(f"evaluating {name}", evaluation_knobs(self.evaluation, self.context)):
                entry = self._evaluate(name, kind, artifact, pages, folder, manifest["train"])
            manifest["evaluation"] = {"key": wanted, "entry": entry}
            _write_manifest(folder, manifest)
        return dict(entry)

    def _stage_pages(self, train: PageSet, given: dict[str, PageSet]) -> dict[str, PageSet]:
        """Each stage's pages; a stage whose config names its own but was handed none is refused before any work."""
        missing = {stage.name: stage.own_pages() for stage in self.stages
                   if stage.own_pages() and stage.name not in given}
        if missing:
            raise ConfigError(f"stages {missing} name pages of their own (`data`) but Pipeline.run was given none for "
                              f"them: pass stage_pages={{name: PageSet}} (dharma_train.resolve_inputs loads them "
                              f"from a RunConfig)")
        return {stage.name: given.get(stage.name, train) for stage in self.stages}

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
        if is_main():
            write_json_atomically(folder / METRICS, metrics)
        return {"stage": name, "kind": kind, "model": artifact.path, "artifact": artifact.to_dict(),
                "metrics": metrics, "train": train}

    @staticmethod
    def _record(summary: dict, tracker: EvaluationLog, entry: dict, output_dir: Path, final: str) -> None:
        """Append a point (with its gate verdict), then rewrite summary.json, the plots and report.md, and log it.
        `final`: the point whose model the run now carries on from (and would export)."""
        summary["entries"].append(entry)
        summary["final_point"] = final
        if not is_main():
            return
        tracker.log(len(summary["entries"]) - 1, entry["stage"], entry["metrics"])
        Pipeline._write(summary, output_dir)

    @staticmethod
    def _write(summary: dict, output_dir: Path) -> None:
        """summary.json and report.md name the run's models relative to the run folder, so they move with it."""
        stored = run_relative(summary, output_dir)
        layout = RunFolder(output_dir)
        write_json_atomically(layout.summary, stored)
        write_report(stored, layout.report, plots=plot_run(summary, output_dir))


def _read_manifest(folder: Path, resume: bool) -> dict | None:
    """Rank 0's reading on every process, so all of them reuse or re-run the same stages."""
    return on_main(read_manifest, folder) if resume else None


def _write_manifest(folder: Path, manifest: dict) -> dict:
    """Written by rank 0 alone (every process holds the same manifest)."""
    on_main(write_manifest, folder, manifest)
    return manifest
