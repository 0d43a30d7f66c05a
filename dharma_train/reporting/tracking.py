"""Experiment tracking: wandb (online with a key, offline without one), TensorBoard files, or off."""

from __future__ import annotations

import os
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


def wandb_mode(config: TrackingConfig) -> str:
    """`auto` is online when WANDB_API_KEY is set and offline otherwise, so a run without a key never stops."""
    if config.mode != "auto":
        return config.mode
    return "online" if os.environ.get("WANDB_API_KEY") else "offline"


def wandb_dir(run_dir: str) -> str:
    """wandb's files go under the run folder unless the user set WANDB_DIR."""
    return os.environ.get("WANDB_DIR") or run_dir


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

            self.run = wandb.init(project=config.project, name=f"{run_name}/evaluation", dir=wandb_dir(run_dir),
                                  mode=wandb_mode(config), reinit="create_new")

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
