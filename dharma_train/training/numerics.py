"""Non-finite training: a NaN or inf gradient is caught before the optimizer applies it.

A NaN or inf loss always reaches the gradients through backpropagation, so checking the gradient norm once per
optimizer step (after clipping, before the update) catches both. The update is then dropped (gradients set to
None, which torch optimizers skip), so the weights never take it; `on_nonfinite` decides what follows:
stop (the stage ends with the step number and saves nothing) or skip (training goes on with the next batch).
"""

from __future__ import annotations

import logging

import torch
from transformers import TrainerCallback

from dharma_train.errors import TrainingError

log = logging.getLogger(__name__)


class NonFiniteGuard(TrainerCallback):
    """Drops an update whose gradient norm is not finite; records the step; stops training unless policy=skip."""

    def __init__(self, policy: str = "stop"):
        if policy not in ("stop", "skip"):
            raise ValueError(f"policy must be 'stop' or 'skip', got {policy!r}")
        self.policy = policy
        self.skipped_steps: list[int] = []
        self.stopped_at: int | None = None
        self.norm: float | None = None

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        gradients = [p.grad for p in model.parameters() if p.grad is not None]
        if not gradients:
            return control
        norm = torch.nn.utils.get_total_norm(gradients)
        if torch.isfinite(norm):
            return control
        step = state.global_step + 1  # the step this update would complete
        for parameter in model.parameters():
            parameter.grad = None
        if self.policy == "skip":
            self.skipped_steps.append(step)
            log.warning("step %d: gradient norm is %s; this batch's update is skipped (%d so far)", step,
                        norm.item(), len(self.skipped_steps))
            return control
        self.stopped_at, self.norm = step, norm.item()
        control.should_training_stop = True
        return control

    def on_step_end(self, args, state, control, **kwargs):
        if self.stopped_at is not None:
            control.should_save = False  # a checkpoint past the bad batch would let a plain re-run step over it
        return control

    def raise_if_stopped(self, stage: str, max_steps: int) -> None:
        """After training: stop with the step and what to change, or fail when no update was ever applied."""
        if self.stopped_at is not None:
            raise TrainingError(
                f"stage {stage}: the gradient norm became {self.norm} at step {self.stopped_at} of {max_steps}; "
                f"the stage stopped and saved nothing. Lower stages.{stage}.optimization.learning_rate, check "
                f"the training data, or set trainer.on_nonfinite=skip to drop such batches and go on")
        if max_steps > 0 and len(self.skipped_steps) >= max_steps:
            raise TrainingError(f"stage {stage}: every one of the {max_steps} steps had a non-finite gradient; "
                                "nothing was learned and nothing was saved")


def check_finite_weights(model, stage: str) -> None:
    """The last line of defence before saving: no NaN or inf anywhere in the trained weights."""
    for name, parameter in model.named_parameters():
        if not torch.isfinite(parameter).all():
            raise TrainingError(f"stage {stage}: trained weight {name} holds NaN or inf values; the model was "
                                "not saved. Lower the learning rate or check the training data")
