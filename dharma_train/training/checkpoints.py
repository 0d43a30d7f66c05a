"""Trainer checkpoints, and a training call that resumes from the last complete one.

The Trainer writes a checkpoint's `trainer_state.json` after its weights, optimizer, scheduler and RNG states, so
a checkpoint is complete exactly when that file parses and names the checkpoint's own step; a save cut short by a
crash leaves a folder without it, which is deleted rather than resumed from. Resuming restores the optimizer,
scheduler, RNG and step, and the Trainer skips the batches already seen, so a resumed CPU run ends with the same
weights as an uninterrupted one.
"""

from __future__ import annotations

import logging
import re
import shutil
from contextlib import contextmanager
from pathlib import Path

import torch
from transformers import TrainerCallback

from dharma_train.console import DropMessages
from dharma_train.files import disk_full_as_error, read_json_or_none
from dharma_train.training.numerics import NonFiniteGuard, check_finite_weights
from dharma_train.training.performance.apply import prepare_trainer
from dharma_train.training.performance.config import vision_cache_bytes
from dharma_train.training.performance.vision_cache import frozen_vision_cached
from dharma_train.training.preemption import StopOnSignal, handle_signals
from dharma_train.training.resources import (
    check_free_disk,
    checkpoint_bytes,
    tensor_bytes,
)

log = logging.getLogger(__name__)

CHECKPOINT = re.compile(r"checkpoint-(\d+)")
STATE_FILE = "trainer_state.json"


def checkpoint_step(folder: Path) -> int | None:
    """The step of a complete checkpoint folder, or None when its save never finished or a file of it is damaged."""
    match = CHECKPOINT.fullmatch(folder.name)
    state = read_json_or_none(folder / STATE_FILE) if match and folder.is_dir() else None
    if not isinstance(state, dict) or state.get("global_step") != int(match.group(1)):
        return None
    damaged = damaged_files(folder)
    if damaged:
        log.warning("%s: not resumable, damaged: %s", folder, "; ".join(damaged))
        return None
    return state["global_step"]


def damaged_files(folder: Path) -> list[str]:
    """Each weight or state file of a checkpoint that cannot be opened (a truncated safetensors or torch.save file),
    with why; checks headers and the zip directory only, so a large checkpoint costs milliseconds."""
    import zipfile

    from safetensors import safe_open

    found = []
    for path in sorted(folder.rglob("*")):
        try:
            if path.suffix == ".safetensors":
                with safe_open(str(path), framework="pt"):
                    pass
            elif path.suffix in (".pt", ".pth", ".bin"):
                zipfile.ZipFile(path).close()  # torch.save's format: a truncated file has no central directory
        except Exception as error:  # safetensors raises its own error type; any failure to open is damage
            found.append(f"{path.name} ({type(error).__name__}: {error})")
    return found


def last_checkpoint(folder: str | Path, remove_incomplete: bool = True) -> Path | None:
    """The complete checkpoint with the highest step under `folder`; incomplete or damaged ones are removed (or
    ignored), so a run resumes from the one before a damaged newest checkpoint."""
    best, best_step = None, -1
    for candidate in Path(folder).glob("checkpoint-*"):
        step = checkpoint_step(candidate)
        if step is None:
            if remove_incomplete:
                log.warning("removing %s: its save did not finish or a file of it is damaged", candidate)
                shutil.rmtree(candidate, ignore_errors=True)
            continue
        if step > best_step:
            best, best_step = candidate, step
    return best


@contextmanager
def partial_checkpoints_removed(folder: Path):
    """A checkpoint whose save a full disk cut short can never be resumed from: removed at the failure, with one
    warning each, so its room is given back now rather than at the next run."""
    from dharma_train.errors import DiskFullError

    try:
        yield
    except DiskFullError:
        if folder.is_dir():
            last_checkpoint(folder)  # removes each checkpoint that is not complete, keeps the complete ones
        raise


def remove_checkpoints(stage_dir: str | Path) -> None:
    """Once a stage is finished its resume points are dead weight (a full-FT checkpoint is 12 bytes a parameter)."""
    for folder in Path(stage_dir).glob("*/checkpoint-*"):
        shutil.rmtree(folder, ignore_errors=True)


class NoFinalCheckpoint(TrainerCallback):
    """The stage saves its model right after the last step: a full checkpoint there would only be deleted."""

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step >= state.max_steps:
            control.should_save = False
        return control


class ReloadFullWeights(TrainerCallback):
    """Resume full-weight checkpoints with their weights actually loaded.

    save_pretrained writes Qwen2.5-VL's weights under the original checkpoint key names, and the Trainer's resume
    loads them with a plain load_state_dict, which matches none of them and keeps the input model's weights
    (transformers#43701, still open in 5.23; LoRA checkpoints are unaffected). Before the first step the weights
    are read again through from_pretrained, which applies the renaming, and copied in place.
    """

    def __init__(self, checkpoint: Path):
        self.checkpoint = checkpoint

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        if hasattr(model, "peft_config") or not any(self.checkpoint.glob("model*.safetensors")):
            return control
        saved = type(model).from_pretrained(self.checkpoint, dtype=next(model.parameters()).dtype)
        model.load_state_dict(saved.state_dict(), strict=True)
        del saved
        log.info("loaded the weights of %s through from_pretrained (the Trainer's own load matches none of the saved "
                 "key names, transformers#43701)", self.checkpoint)
        return control


# The Trainer's missing/unexpected key lists (hundreds of names) on a full-weight resume, which ReloadFullWeights
# repairs and says so in one line.
TRAINER_KEY_LISTS = ("There were missing keys in the checkpoint model loaded",
                     "There were unexpected keys in the checkpoint model loaded")


@contextmanager
def quiet_trainer_key_lists():
    """TRAINER_KEY_LISTS dropped from transformers' Trainer logger while a stage resumes."""
    trainer_log, key_lists = logging.getLogger("transformers.trainer"), DropMessages(TRAINER_KEY_LISTS)
    trainer_log.addFilter(key_lists)
    try:
        yield
    finally:
        trainer_log.removeFilter(key_lists)


def loss_curve(log_history: list[dict]) -> list[list[float]]:
    """[step, training loss] at every logged step: what two runs of one stage are compared on (stage.json)."""
    return [[entry["step"], entry["loss"]] for entry in log_history if "loss" in entry and "step" in entry]


def _no_trainer_card(*args, **kwargs) -> None:
    """TRL's placeholder README.md in NN_stage/trainer/ would read as the stage's model card; export writes the
    real one, from the run's own records."""


def train_resumably(trainer, settings, stage: str, eager_because: str | None = None) -> dict:
    """trainer.train(), resumed from the last complete checkpoint (resume=auto), stopped cleanly by SIGTERM/SIGINT,
    guarded against non-finite gradients; returns the training metrics. `eager_because`: why this stage's layers
    are not compiled whatever `trainer.performance.compile` says."""
    folder = Path(trainer.args.output_dir)
    if settings.resume == "never":
        shutil.rmtree(folder, ignore_errors=True)
    start = last_checkpoint(folder) if folder.is_dir() else None
    start_step = checkpoint_step(start) if start else 0  # read now: the checkpoint may be rotated away in training
    if start is not None:
        log.info("stage %s: resuming from %s (step %d)", stage, start, start_step)
    one_checkpoint = checkpoint_bytes(trainer.model, settings.masters_in_optimizer())
    if settings.checkpoint_every:
        room = (settings.keep_checkpoints + 1) * one_checkpoint + tensor_bytes(trainer.model)
        check_free_disk(folder, room, f"stage {stage}'s checkpoints and saved model")
    prepared = prepare_trainer(trainer, settings, stage, eager_because)
    sampler, recompute = prepared["sampler"], prepared["recompute"]  # None: fixed batches; None: a sharded engine
    guard = NonFiniteGuard(settings.on_nonfinite)
    trainer.create_model_card = _no_trainer_card  # TRL calls it at every checkpoint
    from dharma_train.console import label_training_bar

    label_training_bar(trainer, f"training {stage}")
    with handle_signals() as stop:
        for callback in (NoFinalCheckpoint(), StopOnSignal(stop), guard):  # in this order: the last word on saving
            trainer.add_callback(callback)
        if start is not None:
            trainer.add_callback(ReloadFullWeights(start))
        cache_bytes = vision_cache_bytes(settings.performance.frozen_vision_cache_gib, settings.resolved_device())
        models = [trainer.model] + ([trainer.ref_model] if getattr(trainer, "ref_model", None) is not None else [])
        with stop.graceful(), quiet_trainer_key_lists(), partial_checkpoints_removed(folder), disk_full_as_error(
                f"stage {stage}: writing a checkpoint in {folder}", folder, one_checkpoint), \
                frozen_vision_cached(models, cache_bytes) as vision_caches:
            output = trainer.train(resume_from_checkpoint=str(start) if start else None)
        step = trainer.state.global_step
        saved = last_checkpoint(folder, remove_incomplete=False)
        where = f"; the checkpoint at step {checkpoint_step(saved)} is in {saved}" if saved else "; no checkpoint yet"
        stop.raise_if_requested(f"stage {stage}", f" at step {step} of {trainer.state.max_steps}{where}")
    guard.raise_if_stopped(stage, trainer.state.max_steps)
    check_finite_weights(trainer.model, stage)
    metrics = dict(output.metrics)
    metrics["resumed_from_step"] = start_step
    metrics["loss_curve"] = loss_curve(trainer.state.log_history)
    if guard.skipped_steps:
        metrics["nonfinite_skipped_steps"] = guard.skipped_steps
    if vision_caches:
        metrics["frozen_vision_cache"] = "; ".join(cache.summary() for cache in vision_caches)
    if recompute is not None:
        metrics["recompute"] = recompute
    if recompute is not None and "predicted_peak_gib" in recompute:  # probed: training's peak against the prediction
        recompute["training_peak_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
        log.info("stage %s: recompute=%s; peak memory %.1f GiB in training, %s GiB predicted", stage,
                 recompute["policy"], recompute["training_peak_gib"], recompute["predicted_peak_gib"])
    if sampler is not None:
        metrics["token_budget"] = sampler.budget
    return metrics
