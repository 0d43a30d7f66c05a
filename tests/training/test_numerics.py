"""Non-finite training: a NaN gradient stops the stage with its step (nothing saved) or drops that batch's update."""

import pytest
import torch
from transformers import TrainerCallback

from dharma_train import SFTStage, SFTStageConfig, StageContext
from dharma_train.errors import TrainingError
from dharma_train.training.checkpoints import train_resumably
from dharma_train.training.config import OptimizationConfig, TrainerConfig

pytestmark = pytest.mark.slow


def _settings(policy="stop"):
    return TrainerConfig(device="cpu", precision="fp32", logging_steps=1, checkpoint_every=0, on_nonfinite=policy)


def test_a_diverging_run_stops_at_the_step_and_saves_no_model(tiny_artifact, pages, tmp_path):
    """A learning rate of 1e30 overflows the weights on step 1; step 2's gradient is NaN."""
    config = SFTStageConfig(optimization=OptimizationConfig(method="full", max_steps=4, batch_size=4,
                                                            learning_rate=1e30, warmup=0))
    with pytest.raises(TrainingError, match=r"stage structured: the gradient norm became nan at step 2 of 4"):
        SFTStage("structured", config).run(tiny_artifact, pages[0], tmp_path, StageContext(trainer=_settings()))
    assert not (tmp_path / "model").exists() and not (tmp_path / "stage.json").exists()


class PoisonGradient(TrainerCallback):
    """Fault injection: one step's gradient turns NaN, as a corrupt batch or an fp overflow would make it."""

    def __init__(self, step):
        self.step = step

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        if state.global_step + 1 == self.step:
            next(p for p in model.parameters() if p.grad is not None).grad.fill_(float("nan"))


def _trainer(tiny_artifact, pages, folder, settings):
    from trl import SFTConfig, SFTTrainer

    from dharma_train.data.conversation import sft_dataset
    from dharma_train.models.loading import load_model, load_processor
    from dharma_train.training.arguments import trainer_arguments

    optimization = OptimizationConfig(method="full", max_steps=3, batch_size=4, learning_rate=1e-3)
    trainer = SFTTrainer(model=load_model(tiny_artifact), processing_class=load_processor(tiny_artifact.path),
                         args=SFTConfig(**trainer_arguments(optimization, settings, str(folder), [], "t/s")),
                         train_dataset=sft_dataset(pages, "structured"))
    trainer.add_callback(PoisonGradient(step=2))  # before the guard, which train_resumably adds
    return trainer


def test_skip_drops_the_poisoned_update_and_keeps_training(tiny_artifact, pages, tmp_path):
    trainer = _trainer(tiny_artifact, pages[0], tmp_path, _settings("skip"))
    metrics = train_resumably(trainer, _settings("skip"), "s")
    assert metrics["nonfinite_skipped_steps"] == [2]
    assert trainer.state.global_step == 3
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())


def test_stop_ends_the_stage_at_the_poisoned_step(tiny_artifact, pages, tmp_path):
    trainer = _trainer(tiny_artifact, pages[0], tmp_path, _settings("stop"))
    with pytest.raises(TrainingError, match="at step 2 of 3.*trainer.on_nonfinite=skip"):
        train_resumably(trainer, _settings("stop"), "s")
    assert trainer.state.global_step == 2
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters()), "the NaN update was never applied"
