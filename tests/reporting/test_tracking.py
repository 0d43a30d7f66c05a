from pathlib import Path

import pytest

from dharma_train.reporting.tracking import EvaluationLog, TrackingConfig, flatten
from dharma_train.reporting.trainer_tracking import trainer_tracking


def test_flatten_keeps_numbers_and_nests_families():
    flat = flatten({"cer": 0.5, "pages": 3, "ok": True, "name": "x", "by_family": {"legal": {"cer": 0.25}}}, "eval")
    assert flat == {"eval/cer": 0.5, "eval/pages": 3, "eval/by_family/legal/cer": 0.25}


def test_tracking_off_reports_nowhere(tmp_path):
    tracking = trainer_tracking(TrackingConfig(), str(tmp_path), "run/stage")
    assert (tracking.report_to, tracking.callbacks) == ([], [])
    log = EvaluationLog(TrackingConfig(), "run", str(tmp_path))
    log.log(0, "base", {"cer": 1.0})
    log.close()


def test_wandb_without_a_key_logs_offline(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    for name in ("WANDB_MODE", "WANDB_DIR", "WANDB_PROJECT"):
        monkeypatch.delenv(name, raising=False)
    log = EvaluationLog(TrackingConfig(backend="wandb"), "run", str(tmp_path))
    log.log(0, "base", {"cer": 1.0, "by_family": {"legal": {"cer": 0.5}}})
    log.close()
    assert list((tmp_path / "wandb").glob("offline-run-*")), "an offline run is written under the run folder"


def test_bad_backend_is_refused():
    with pytest.raises(ValueError, match="tracking.backend"):
        TrackingConfig(backend="mlflow")


def test_tensorboard_writes_evaluation_events(tmp_path):
    log = EvaluationLog(TrackingConfig(backend="tensorboard"), "run", str(tmp_path))
    log.log(0, "base", {"cer": 1.0})
    log.log(1, "sft", {"cer": 0.5})
    log.close()
    events = list((tmp_path / "tensorboard" / "evaluation").glob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 0
    tracking = trainer_tracking(TrackingConfig(backend="tensorboard"), str(tmp_path), "run/stage")
    assert (tracking.report_to, tracking.callbacks) == (["tensorboard"], [])


def _offline_runs(folder: Path) -> list[Path]:
    return sorted((folder / "wandb").glob("offline-run-*"))


@pytest.mark.slow
def test_a_pipeline_trains_and_evaluates_with_wandb_on(tiny_artifact, pages, tmp_path, monkeypatch):
    """The real recipes track with wandb: the evaluation run stays open while each stage's trainer logs its own run
    (transformers' WandbCallback stopped the first stage: its wandb.init returned the open evaluation run)."""
    from dharma_train import EvalConfig, OptimizationConfig, Pipeline, SFTStage, SFTStageConfig, StageContext
    from dharma_train import TrainerConfig

    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_DIR", raising=False)
    train, eval_pages = pages
    steps = OptimizationConfig(max_steps=2, batch_size=2, gradient_accumulation=1, learning_rate=1e-3, warmup=0)
    stages = [SFTStage(name, SFTStageConfig(optimization=steps)) for name in ("first", "second")]
    pipeline = Pipeline(stages=stages, evaluation=EvalConfig(max_new_tokens=4, batch_size=4, max_pages=2),
                        context=StageContext(trainer=TrainerConfig(device="cpu", logging_steps=1, checkpoint_every=0),
                                             tracking=TrackingConfig(backend="wandb"), run_name="tracked"))
    summary = pipeline.run(tiny_artifact, train, eval_pages, tmp_path)
    assert [entry["stage"] for entry in summary["entries"]] == ["base", "first", "second"]
    assert len(_offline_runs(tmp_path)) == 1, "one evaluation run for the whole pipeline"
    for folder in ("01_first", "02_second"):
        runs = _offline_runs(tmp_path / folder)
        assert len(runs) == 1, f"{folder} logs its training into a run of its own, under its folder"
        logged = b"".join(path.read_bytes() for path in runs[0].glob("*.wandb"))
        assert b"train/loss" in logged and b"tracked/" in logged
    import wandb

    assert wandb.run is None, "every run the pipeline opened is finished"


def test_the_stage_run_is_closed_when_training_fails(tmp_path, monkeypatch):
    """A stage that raises still finishes its wandb run (the stage closes its tracking in a finally)."""
    from transformers import TrainerControl, TrainerState, TrainingArguments

    monkeypatch.delenv("WANDB_DIR", raising=False)
    tracking = trainer_tracking(TrackingConfig(backend="wandb", mode="offline"), str(tmp_path), "run/stage")
    assert tracking.report_to == [], "transformers' own WandbCallback stays out"
    (callback,) = tracking.callbacks
    args = TrainingArguments(output_dir=str(tmp_path / "trainer"), use_cpu=True, report_to=[])
    callback.on_train_begin(args, TrainerState(), TrainerControl())
    callback.on_log(args, TrainerState(global_step=3), TrainerControl(), logs={"loss": 1.5, "eval_cer": 0.5})
    run = callback.run
    assert run is not None and run.name == "run/stage"
    tracking.close()
    assert callback.run is None and run._is_finished
    assert _offline_runs(tmp_path), "written under the run folder"


def test_a_users_own_wandb_dir_is_kept(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "mine"))
    (tmp_path / "mine").mkdir()
    log = EvaluationLog(TrackingConfig(backend="wandb", mode="offline"), "run", str(tmp_path / "run"))
    log.close()
    assert _offline_runs(tmp_path / "mine") and not (tmp_path / "run" / "wandb").exists()
