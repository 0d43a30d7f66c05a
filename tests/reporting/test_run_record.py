"""run.json: the resolved config, the command that resumes the run, git commit, package versions, hardware."""

import json
import subprocess
from pathlib import Path

import dharma_train
from dharma_train.config import RunConfig
from dharma_train.data.config import DataConfig, SplitConfig
from dharma_train.models.config import ModelConfig
from dharma_train.reporting.run_record import resume_command, run_provenance, write_run_record
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


def test_the_run_report_says_what_the_load_report_says_silver_answers_included(tmp_path, caplog):
    """report.md's "How this run was made" line for a source has the load report's own counts, and marks answers
    made from PDF text layers as unverified."""
    from dharma_train.data.loading import load_splits
    from dharma_train.data.text_layer_pages import text_layer_pages
    from tests.data.documents import Text, make_pdf

    (tmp_path / "pdfs").mkdir()
    (tmp_path / "pdfs" / "lei.pdf").write_bytes(make_pdf([[Text("Art. 1º", 72, 700)], [Text("Art. 2º", 72, 700)],
                                                          [Text("escondido", 72, 700, invisible=True)]]))
    text_layer_pages(tmp_path / "pdfs", tmp_path / "silver", dpi=72)
    load_splits(DataConfig(train=str(tmp_path / "silver"), split=SplitConfig(eval=0.4)), tmp_path / "run" / "data")
    provenance = run_provenance(tmp_path / "run")
    saved = json.loads((tmp_path / "run" / "data" / "load_report.json").read_text())["sources"][0]
    assert (saved["rows"], saved["used"], saved["unverified"]) == (2, 2, {"pdf_text_layer": 2})
    assert provenance["loaded"] == [f"`{tmp_path / 'silver'}` (train): 2 rows, 0 skipped; 2 used, 0 fixed; "
                                    f"2 unverified answers (pdf_text_layer 2): silver data; format pages"]
    assert "data.eval: 1 of its 1 pages have unverified answers (pdf_text_layer 1): scores against them measure " \
           "agreement with those answers, not accuracy" in caplog.text
