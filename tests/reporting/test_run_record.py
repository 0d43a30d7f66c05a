"""run.json: the resolved config, the command that resumes the run, git commit, package versions, hardware."""

import json
import subprocess
from pathlib import Path

import dharma_train
from dharma_train.config import RunConfig
from dharma_train.data.config import DataConfig
from dharma_train.models.config import ModelConfig
from dharma_train.reporting.run_record import resume_command, write_run_record
from dharma_train.stages import SFTStageConfig


def test_the_run_record_says_what_ran_where(tmp_path):
    config = RunConfig(name="t", output_dir=str(tmp_path), model=ModelConfig(), data=DataConfig(),
                       stages={"structured": SFTStageConfig()})
    record = json.loads(write_run_record(config, ["trainer.seed=3"]).read_text())
    assert record["config"]["stages"]["structured"]["optimization"]["method"] == "lora"
    assert record["command"] == "python -m dharma_train trainer.seed=3"
    assert record["resume_command"] == f"python -m dharma_train trainer.seed=3 output_dir={tmp_path}"
    assert record["packages"]["torch"] and record["packages"]["transformers"] and record["packages"]["python"]
    assert record["hardware"]["cpu_count"] >= 1 and record["hardware"]["memory_gb"] > 0
    checkout = Path(dharma_train.__file__).resolve().parents[1]
    if (checkout / ".git").exists():
        head = subprocess.run(["git", "-C", str(checkout), "rev-parse", "HEAD"], capture_output=True, text=True)
        assert record["git"]["commit"] == head.stdout.strip()


def test_the_resume_command_pins_the_output_folder(tmp_path):
    command = resume_command(["recipe=tiny", "output_dir=elsewhere", "stages.x.data=/my pages"], str(tmp_path))
    assert command == f"python -m dharma_train recipe=tiny 'stages.x.data=/my pages' output_dir={tmp_path}"
