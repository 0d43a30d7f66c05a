"""What a stage's Trainer reports to: TensorBoard through the Trainer's own writer, wandb as a run of the stage's own
beside the pipeline's evaluation run."""

from __future__ import annotations

from dataclasses import dataclass

from transformers import TrainerCallback

from dharma_train.reporting.tracking import TrackingConfig, wandb_dir, wandb_mode


@dataclass
class TrainerTracking:
    """What a stage's Trainer gets: its `report_to` and the callbacks that log its curves; closed after training."""

    report_to: list[str]
    callbacks: list

    def close(self) -> None:
        for callback in self.callbacks:
            callback.close()


def trainer_tracking(config: TrackingConfig, run_dir: str, run_name: str) -> TrainerTracking:
    """TensorBoard through the Trainer's own writer (under its output_dir); wandb through WandbTrainingLog."""
    if config.backend == "tensorboard":
        return TrainerTracking(["tensorboard"], [])
    if config.backend == "wandb":
        return TrainerTracking([], [WandbTrainingLog(config, run_dir, run_name)])
    return TrainerTracking([], [])


class WandbTrainingLog(TrainerCallback):
    """A stage's training curves as a wandb run of its own (`<run>/<stage>`), opened beside the pipeline's
    evaluation run. Hand-written because transformers' WandbCallback logs through wandb's one global run: with the
    evaluation run open, its `wandb.init` returns that run without making it global, and `wandb.config.update`
    raises ("You must call wandb.init() before wandb.config.update")."""

    def __init__(self, config: TrackingConfig, run_dir: str, run_name: str):
        self.config, self.run_dir, self.run_name = config, run_dir, run_name
        self.run = None

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        if self.run is not None or not state.is_world_process_zero:
            return
        import wandb

        self.run = wandb.init(project=self.config.project, name=self.run_name, dir=wandb_dir(self.run_dir),
                              mode=wandb_mode(self.config), reinit="create_new",
                              config=_training_settings(args, model))
        self.run.define_metric("train/global_step")
        self.run.define_metric("*", step_metric="train/global_step", step_sync=True)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.run is not None and logs:
            self.run.log({**{_metric_name(key): value for key, value in logs.items()},
                          "train/global_step": state.global_step})

    def on_train_end(self, args, state, control, **kwargs):
        self.close()

    def close(self) -> None:
        if self.run is not None:
            self.run.finish()
            self.run = None


def _metric_name(key: str) -> str:
    """The Trainer's log keys as transformers' own wandb integration names them: `eval_x` -> `eval/x`, else
    `train/x`."""
    for prefix in ("eval", "test"):
        if key.startswith(f"{prefix}_"):
            return f"{prefix}/{key[len(prefix) + 1:]}"
    return f"train/{key}"


def _training_settings(args, model) -> dict:
    """The run's config in wandb: the model's config under the TrainingArguments, as transformers logs it."""
    settings = args.to_dict()
    model_config = getattr(model, "config", None)
    if model_config is not None:
        settings = {**(model_config if isinstance(model_config, dict) else model_config.to_dict()), **settings}
    return settings
