"""What a stage writes to disk while it trains: resume points only, never one at the step before the model is saved."""

import pytest

from dharma_train.training.checkpoints import train_resumably
from dharma_train.training.config import OptimizationConfig, TrainerConfig

pytestmark = pytest.mark.slow


def _train(tiny_artifact, pages, folder, max_steps, checkpoint_every):
    from trl import SFTConfig, SFTTrainer

    from dharma_train.data.conversation import sft_dataset
    from dharma_train.models.loading import load_model, load_processor
    from dharma_train.training.arguments import trainer_arguments

    settings = TrainerConfig(device="cpu", precision="fp32", logging_steps=1, checkpoint_every=checkpoint_every)
    optimization = OptimizationConfig(method="full", max_steps=max_steps, batch_size=1, learning_rate=1e-4)
    trainer = SFTTrainer(model=load_model(tiny_artifact), processing_class=load_processor(tiny_artifact.path),
                         args=SFTConfig(**trainer_arguments(optimization, settings, str(folder), [], "t/s")),
                         train_dataset=sft_dataset(pages, "structured"))
    train_resumably(trainer, settings, "s")
    return trainer


def test_no_checkpoint_or_optimizer_state_is_written_at_the_last_step(tiny_artifact, pages, tmp_path):
    """Steps 2 and 4 of 4 are checkpoint steps; the stage saves its model after step 4, so only step 2 resumes."""
    _train(tiny_artifact, pages[0], tmp_path, max_steps=4, checkpoint_every=2)
    assert sorted(p.name for p in tmp_path.glob("checkpoint-*")) == ["checkpoint-2"]
    assert [p.parent.name for p in tmp_path.rglob("optimizer.pt")] == ["checkpoint-2"]


def test_a_last_step_off_the_schedule_writes_nothing_either(tiny_artifact, pages, tmp_path):
    """transformers saves at the end of training under save_strategy=steps, whatever the schedule."""
    _train(tiny_artifact, pages[0], tmp_path, max_steps=3, checkpoint_every=2)
    assert sorted(p.name for p in tmp_path.glob("checkpoint-*")) == ["checkpoint-2"]
