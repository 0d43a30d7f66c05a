import os
from pathlib import Path

import pytest

from dharma_train.reporting.tracking import EvaluationLog, TrackingConfig, flatten, report_to


def test_flatten_keeps_numbers_and_nests_families():
    flat = flatten({"cer": 0.5, "pages": 3, "ok": True, "name": "x", "by_family": {"legal": {"cer": 0.25}}}, "eval")
    assert flat == {"eval/cer": 0.5, "eval/pages": 3, "eval/by_family/legal/cer": 0.25}


def test_tracking_off_reports_nowhere(tmp_path):
    assert report_to(TrackingConfig(), str(tmp_path)) == []
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
    assert report_to(TrackingConfig(backend="tensorboard"), str(tmp_path)) == ["tensorboard"]


def test_each_run_folder_gets_its_own_wandb_dir_in_one_process(tmp_path, monkeypatch):
    """An ablation runs its bases in one process: the second base's trainer logs go to its own folder."""
    from dharma_train.reporting.tracking import report_to

    monkeypatch.delenv("WANDB_DIR", raising=False)
    config = TrackingConfig(backend="wandb", mode="offline")
    report_to(config, str(tmp_path / "first"))
    assert os.environ["WANDB_DIR"] == str(tmp_path / "first")
    EvaluationLog(config, "first", str(tmp_path / "first")).close()  # wandb now holds its settings singleton
    report_to(config, str(tmp_path / "second"))
    assert os.environ["WANDB_DIR"] == str(tmp_path / "second")
    import wandb

    run = wandb.init(project="dharma_train", mode="offline")  # as transformers' WandbCallback calls it: no dir
    run.finish()
    assert Path(run.dir).is_relative_to(tmp_path / "second"), run.dir


def test_a_users_own_wandb_dir_is_kept(tmp_path, monkeypatch):
    from dharma_train.reporting.tracking import report_to

    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "mine"))
    report_to(TrackingConfig(backend="wandb", mode="offline"), str(tmp_path / "run"))
    assert os.environ["WANDB_DIR"] == str(tmp_path / "mine")
