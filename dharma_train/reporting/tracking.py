"""Experiment tracking: wandb (online with a key, offline without one), TensorBoard files, or off."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass


@dataclass
class TrackingConfig:
    backend: str = "none"  # none | wandb | tensorboard
    project: str = "dharma_train"
    mode: str = "auto"  # auto: online when WANDB_API_KEY is set, else offline | online | offline

    def __post_init__(self):
        if self.backend not in ("none", "wandb", "tensorboard"):
            raise ValueError(f"tracking.backend must be 'none', 'wandb' or 'tensorboard', got {self.backend!r}")
        if self.mode not in ("auto", "online", "offline"):
            raise ValueError(f"tracking.mode must be 'auto', 'online' or 'offline', got {self.mode!r}")


def report_to(config: TrackingConfig, run_dir: str) -> list[str]:
    """The Trainer's `report_to`, with wandb's environment set so runs group under one project, offline by default."""
    if config.backend == "none":
        return []
    if config.backend == "tensorboard":
        return ["tensorboard"]  # the Trainer writes under its output_dir
    mode = config.mode
    if mode == "auto":
        mode = "online" if os.environ.get("WANDB_API_KEY") else "offline"
    os.environ.setdefault("WANDB_PROJECT", config.project)
    os.environ["WANDB_MODE"] = mode
    _set_wandb_dir(run_dir)
    return ["wandb"]


_wandb_dir_we_set: str | None = None  # WANDB_DIR as this process last set it (a user's own value is never replaced)


def _set_wandb_dir(run_dir: str) -> None:
    """Each stage's trainer logs into its own run folder, also for the second base of an ablation in one process."""
    global _wandb_dir_we_set
    if os.environ.get("WANDB_DIR") not in (None, _wandb_dir_we_set):
        return
    os.environ["WANDB_DIR"] = _wandb_dir_we_set = run_dir
    if "wandb" in sys.modules:  # wandb reads WANDB_DIR once per process, into its settings singleton: update those
        sys.modules["wandb"].setup().settings.root_dir = run_dir


class EvaluationLog:
    """Each evaluated point's metrics as one step: a wandb run `<name>/evaluation` or TensorBoard files."""

    def __init__(self, config: TrackingConfig, run_name: str, run_dir: str):
        self.run = None
        self.writer = None
        if config.backend == "tensorboard":
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(log_dir=os.path.join(run_dir, "tensorboard", "evaluation"))
        if config.backend == "wandb":
            import wandb

            report_to(config, run_dir)  # sets WANDB_MODE and the project
            self.run = wandb.init(project=config.project, name=f"{run_name}/evaluation", dir=run_dir,
                                  mode=os.environ["WANDB_MODE"], reinit="create_new")

    def log(self, step: int, point: str, metrics: dict) -> None:
        if self.run is not None:
            self.run.log({**flatten(metrics, "eval"), "point": point}, step=step)
        if self.writer is not None:
            for key, value in flatten(metrics, "eval").items():
                self.writer.add_scalar(key, value, global_step=step)
            self.writer.add_text("eval/point", point, global_step=step)

    def close(self) -> None:
        if self.run is not None:
            self.run.finish()
            self.run = None
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def flatten(metrics: dict, prefix: str) -> dict:
    """Nested metric dicts as `prefix/a/b` keys, numbers only."""
    flat = {}
    for key, value in metrics.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}/{key}"))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            flat[f"{prefix}/{key}"] = value
    return flat
