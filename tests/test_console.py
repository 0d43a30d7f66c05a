"""What a run prints: progress lines from the Python API, and no library notice a user cannot act on."""

import logging
import os
import subprocess
import sys
import warnings

from dharma_train.console import quiet_libraries


def _stderr(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stderr


def test_the_python_api_shows_progress_unless_the_script_configures_logging(tmp_path):
    """Importing sets up no logging; running a pipeline (the Python API's entry point) shows its progress."""
    emit = "import logging; log = logging.getLogger('dharma_train.pipeline'); log.info('[1/3] stage a'); "
    start = ("from dharma_train import Pipeline, SFTStage\n"
             f"try:\n    Pipeline(stages=[SFTStage('a'), SFTStage('a')]).run(None, None, None, {str(tmp_path)!r})\n"
             "except Exception:\n    pass\n")  # refused at its start (two stages named a), after setting up output
    assert _stderr("import dharma_train; " + emit) == "", "import dharma_train installs no handler"
    assert _stderr(start + emit).splitlines() == ["[dharma_train] [1/3] stage a"]
    configured = _stderr("import logging, dharma_train; logging.basicConfig(level=logging.INFO, format='%(message)s')\n"
                         + start + emit)
    assert configured.splitlines() == ["[1/3] stage a"], "the script's own handler alone, never twice"


def test_notices_nobody_can_act_on_are_dropped_and_a_repeated_warning_is_said_once(monkeypatch):
    for name in ("LLM_COMPRESSOR_LOG_LEVEL", "TOKENIZERS_PARALLELISM", "HF_DATASETS_DISABLE_PROGRESS_BARS"):
        monkeypatch.setenv(name, "as the user set it")  # restored after the test; setdefault keeps a user's value
    handler = logging.StreamHandler()
    monkeypatch.setattr(logging.getLogger(), "handlers", [handler])  # pytest's own handlers stay untouched
    quiet_libraries()
    shown = []
    handler.emit = shown.append  # what the console handler would print, after its filters
    logging.getLogger("transformers.trainer_utils").warning("The tokenizer has new PAD/BOS/EOS tokens that ...")
    logging.getLogger("torch.fx._symbolic_trace").warning("is_fx_tracing will return true for both ...")
    for _ in range(3):
        logging.getLogger("dharma_train.stages.sft").warning("stage structured: only 3 pages")
    assert [record.getMessage() for record in shown] == ["stage structured: only 3 pages"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        quiet_libraries()
        warnings.warn("Attempting to save a model with offloaded modules. Ensure that ...", UserWarning)
    assert caught == []
    assert os.environ["LLM_COMPRESSOR_LOG_LEVEL"] == "as the user set it"
    from transformers.utils import logging as transformers_logging

    assert not transformers_logging.is_progress_bar_enabled(), "no shard-writing bars inside the training bar"
    transformers_logging.enable_progress_bar()  # this test process's other tests keep the default


def test_the_training_bar_names_its_stage(tmp_path, capsys):
    import torch
    from transformers import Trainer, TrainingArguments
    from transformers.trainer_callback import TrainerControl, TrainerState

    from dharma_train.console import label_training_bar

    trainer = Trainer(model=torch.nn.Linear(1, 1),
                      args=TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to=[]))
    label_training_bar(trainer, "training structured")
    bars = [c for c in trainer.callback_handler.callbacks if hasattr(c, "training_bar")]
    assert [type(bar).__name__ for bar in bars] == ["LabeledProgress"], "the unlabeled bar is replaced"
    bars[0].on_train_begin(trainer.args, TrainerState(max_steps=3, is_world_process_zero=True), TrainerControl())
    bars[0].training_bar.close()
    assert "training structured:" in capsys.readouterr().err
