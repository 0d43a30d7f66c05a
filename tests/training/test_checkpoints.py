"""Which trainer checkpoint a stage resumes from: the newest complete one; a save cut short is never used."""

import json

import pytest

from dharma_train.training.checkpoints import checkpoint_step, last_checkpoint, loss_curve, remove_checkpoints


def _checkpoint(folder, step, state=True, text=None):
    import torch
    from safetensors.torch import save_file

    path = folder / f"checkpoint-{step}"
    path.mkdir(parents=True)
    save_file({"weight": torch.zeros(64)}, str(path / "model.safetensors"))
    torch.save({"state": {0: torch.ones(64)}}, path / "optimizer.pt")
    if state:
        (path / "trainer_state.json").write_text(text if text is not None else json.dumps({"global_step": step}))
    return path


def test_the_newest_complete_checkpoint_is_chosen_and_unfinished_saves_are_removed(tmp_path):
    _checkpoint(tmp_path, 2)
    newest = _checkpoint(tmp_path, 10)
    killed_before_state = _checkpoint(tmp_path, 12, state=False)
    killed_while_writing_state = _checkpoint(tmp_path, 14, text='{"global_step": 1')
    assert last_checkpoint(tmp_path) == newest and checkpoint_step(newest) == 10
    assert not killed_before_state.exists() and not killed_while_writing_state.exists()


@pytest.mark.parametrize("name", ["model.safetensors", "optimizer.pt"])
def test_a_damaged_newest_checkpoint_is_passed_over_for_the_one_before(tmp_path, caplog, name):
    """Issue 34: a truncated file beside a complete trainer_state.json blocked every re-run with a raw traceback."""
    before = _checkpoint(tmp_path, 2)
    newest = _checkpoint(tmp_path, 4)
    data = (newest / name).read_bytes()
    (newest / name).write_bytes(data[: len(data) // 2])
    assert last_checkpoint(tmp_path) == before and not newest.exists()
    assert f"checkpoint-4: not resumable, damaged: {name}" in caplog.text


def test_a_state_naming_another_step_is_not_trusted(tmp_path):
    _checkpoint(tmp_path, 4, text=json.dumps({"global_step": 3}))
    assert last_checkpoint(tmp_path, remove_incomplete=False) is None
    assert (tmp_path / "checkpoint-4").exists()


def test_finished_stages_drop_their_checkpoints_only(tmp_path):
    trainer = tmp_path / "trainer"
    _checkpoint(trainer, 2)
    (trainer / "runs").mkdir()
    (tmp_path / "model").mkdir()
    remove_checkpoints(tmp_path)
    assert sorted(p.name for p in trainer.iterdir()) == ["runs"] and (tmp_path / "model").is_dir()


def test_the_loss_curve_keeps_training_losses_only():
    history = [{"loss": 2.5, "step": 1, "epoch": 0.1}, {"eval_loss": 9.0, "step": 1}, {"loss": 2.0, "step": 2},
               {"train_loss": 2.25, "step": 2, "train_runtime": 1.0}]
    assert loss_curve(history) == [[1, 2.5], [2, 2.0]]


@pytest.mark.slow
def test_resumed_from_step_stays_known_when_its_checkpoint_is_rotated_away(tiny_artifact, pages, tmp_path):
    """Resumed from checkpoint-1 with keep_checkpoints=1, the stage's checkpoint-2 rotates checkpoint-1 away; the
    stage must still say it resumed from step 1 (it once read the step after training, from the deleted folder)."""
    import shutil

    from dharma_train import SFTStage, SFTStageConfig, StageContext
    from dharma_train.training.config import OptimizationConfig, TrainerConfig

    config = SFTStageConfig(optimization=OptimizationConfig(method="lora", max_steps=3, batch_size=4))
    whole = tmp_path / "whole"
    keep_all = TrainerConfig(device="cpu", precision="fp32", checkpoint_every=1, keep_checkpoints=3, logging_steps=1)
    first = SFTStage("s", config).run(tiny_artifact, pages[0], whole, StageContext(trainer=keep_all))
    resumed = tmp_path / "resumed"
    shutil.copytree(whole / "trainer" / "checkpoint-1", resumed / "trainer" / "checkpoint-1")
    keep_one = TrainerConfig(device="cpu", precision="fp32", checkpoint_every=1, keep_checkpoints=1,
                             logging_steps=1)
    result = SFTStage("s", config).run(tiny_artifact, pages[0], resumed, StageContext(trainer=keep_one))
    assert [p.name for p in (resumed / "trainer").glob("checkpoint-*")] == ["checkpoint-2"], "1 was rotated away"
    assert result.metrics["resumed_from_step"] == 1
    assert [step for step, _ in first.metrics["loss_curve"]] == [1, 2, 3]
    assert [step for step, _ in result.metrics["loss_curve"]] == [1, 2, 3], "the steps before the resume are kept"


@pytest.mark.slow
def test_a_full_weight_resume_loads_the_weights_and_prints_no_key_lists(tiny_artifact, pages, tmp_path):
    """The Trainer's own load matches none of the saved names (transformers#43701) and lists them all; the stage
    reloads the weights itself, so those lists are noise and stay out of the log."""
    import logging
    import shutil

    from dharma_train import SFTStage, SFTStageConfig, StageContext
    from dharma_train.training.config import OptimizationConfig, TrainerConfig

    class Records(logging.Handler):
        def __init__(self):
            super().__init__()
            self.messages = []

        def emit(self, record):
            self.messages.append(record.getMessage())

    config = SFTStageConfig(optimization=OptimizationConfig(method="full", max_steps=2, batch_size=4))
    trainer = TrainerConfig(device="cpu", precision="fp32", checkpoint_every=1, keep_checkpoints=3, logging_steps=1)
    whole = SFTStage("s", config).run(tiny_artifact, pages[0], tmp_path / "whole", StageContext(trainer=trainer))
    shutil.copytree(tmp_path / "whole" / "trainer" / "checkpoint-1", tmp_path / "resumed" / "trainer" / "checkpoint-1")
    records, trainer_log = Records(), logging.getLogger("transformers.trainer")
    trainer_log.addHandler(records)
    try:
        resumed = SFTStage("s", config).run(tiny_artifact, pages[0], tmp_path / "resumed",
                                            StageContext(trainer=trainer))
    finally:
        trainer_log.removeHandler(records)
    assert not [m for m in records.messages if "keys in the checkpoint" in m], records.messages
    assert resumed.metrics["resumed_from_step"] == 1
    assert resumed.metrics["loss_curve"] == whole.metrics["loss_curve"], "the resumed run continues the same weights"


@pytest.mark.slow
def test_no_placeholder_model_card_is_left_beside_the_checkpoints(tiny_artifact, pages, tmp_path):
    """TRL writes a README.md into the trainer folder at every checkpoint: a card with nothing of the run in it.
    (PEFT's own card inside each adapter folder is another matter, left as it is.)"""
    from dharma_train import SFTStage, SFTStageConfig, StageContext
    from dharma_train.training.config import OptimizationConfig, TrainerConfig

    config = SFTStageConfig(optimization=OptimizationConfig(method="lora", max_steps=2, batch_size=4))
    every_step = TrainerConfig(device="cpu", precision="fp32", checkpoint_every=1, keep_checkpoints=3)
    SFTStage("s", config).run(tiny_artifact, pages[0], tmp_path, StageContext(trainer=every_step))
    assert list((tmp_path / "trainer").glob("checkpoint-*")), "a checkpoint was written"
    assert not (tmp_path / "trainer" / "README.md").exists()
