"""What a run prints: dharma_train's progress lines, and none of the libraries' notices a user cannot act on.

`drop_library_notices()` (the CLI's `quiet_libraries()` and the Python API's Pipeline.run call it) drops, by their exact text, notices that are true of every CPU run or every tiny model and
say nothing to do (llm-compressor's "No accelerator available", transformers' offloaded-modules size warning on
a 3 MB model, the Trainer's pad-token alignment notice, a torch.fx API note); `show_progress()` gives the
Python API the CLI's progress lines; `one_bar()` gives a step whose libraries draw their own bars one labelled bar.
"""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from collections.abc import Callable, Iterator

# (logger name, the start of a message that is never actionable here)
DROPPED_LOG_LINES = (
    ("transformers.trainer_utils", "The tokenizer has new PAD/BOS/EOS tokens"),
    ("torch.fx._symbolic_trace", "is_fx_tracing will return true"),  # a torch API note, hit inside llm-compressor
)
DROPPED_WARNINGS = (
    r"Attempting to save a model with offloaded modules",  # transformers: names 50GB whatever the model's size
)


class DropMessages(logging.Filter):
    """Drops a logger's records whose message starts with one of `starts` (notices known to be noise)."""

    def __init__(self, starts: tuple[str, ...]):
        super().__init__()
        self.starts = starts

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.starts)


class _SayOnce(logging.Filter):
    """A warning repeated word for word (once per stage, say) is shown the first time only."""

    def __init__(self):
        super().__init__()
        self.seen: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        text = record.getMessage()
        if text in self.seen:
            return False
        self.seen.add(text)
        return True


def say_once(handlers: list[logging.Handler]) -> None:
    """Each of these handlers shows a given warning text once."""
    for handler in handlers:
        if not any(isinstance(f, _SayOnce) for f in handler.filters):
            handler.addFilter(_SayOnce())


def drop_library_notices() -> None:
    """Drop the known non-actionable notices, for the CLI and the Python API alike (Pipeline.run and the quantize
    stage call it before llm-compressor and compressed-tensors are first imported, when they read their log level;
    a user who wants their notices sets LLM_COMPRESSOR_LOG_LEVEL / COMPRESSED_TENSORS_LOG_LEVEL)."""
    os.environ.setdefault("LLM_COMPRESSOR_LOG_LEVEL", "ERROR")
    os.environ.setdefault("COMPRESSED_TENSORS_LOG_LEVEL", "ERROR")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # else the tokenizers library warns at every fork
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")  # "Casting the dataset" bars of internal steps
    for name, start in DROPPED_LOG_LINES:
        logger = logging.getLogger(name)
        if not any(isinstance(f, DropMessages) and f.starts == (start,) for f in logger.filters):
            logger.addFilter(DropMessages((start,)))
    for message in DROPPED_WARNINGS:
        warnings.filterwarnings("ignore", message=message)  # an identical filter replaces the earlier one


def quiet_libraries() -> None:
    """The CLI's console: the library notices dropped, and each repeated warning shown once on the handlers
    configured now."""
    drop_library_notices()
    say_once(logging.getLogger().handlers)
    # transformers' "Loading weights" and "Writing model shards" bars: one per checkpoint save, drawn inside the
    # stage's training bar (cursor-up lines); the stage's own lines say what is loaded and saved.
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()


class _ConsoleUnlessConfigured(logging.StreamHandler):
    """Prints dharma_train's lines only while nobody configured logging (no root handler), so a script that
    calls logging.basicConfig, or the CLI's Hydra logging, never sees them twice."""

    def emit(self, record: logging.LogRecord) -> None:
        if not logging.getLogger().handlers:
            super().emit(record)


def show_progress() -> None:
    """The Python API's default: dharma_train's INFO lines (stage started, reused, evaluated) on stderr."""
    logger = logging.getLogger("dharma_train")
    if any(isinstance(handler, _ConsoleUnlessConfigured) for handler in logger.handlers):
        return
    handler = _ConsoleUnlessConfigured()
    handler.setFormatter(logging.Formatter("[dharma_train] %(message)s"))
    say_once([handler])
    logger.addHandler(handler)
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.INFO)


def label_training_bar(trainer, label: str) -> None:
    """Replace the Trainer's unlabeled step bar with one that names the stage ('training structured: 40%|...')."""
    from transformers.trainer_callback import ProgressCallback

    class LabeledProgress(ProgressCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            super().on_train_begin(args, state, control, **kwargs)
            if self.training_bar is not None:
                self.training_bar.set_description(label)

    if any(type(callback) is ProgressCallback for callback in trainer.callback_handler.callbacks):
        trainer.remove_callback(ProgressCallback)
        trainer.add_callback(LabeledProgress())


@contextlib.contextmanager
def one_bar(label: str, follow: Callable[[object, str], None] | None = None) -> Iterator[object]:
    """One labelled bar for a step whose libraries draw their own: every other tqdm bar created meanwhile is
    disabled, and `follow(bar, description)` may advance ours from each silenced bar's description.

    Why a patch: llm-compressor 0.14 has no option for its bars (AWQ nests a "Grid search" bar per layer inside
    "Calibrating" ones: 190 cursor-up sequences quantizing the 2-layer tiny model), and tqdm's own switch
    (TQDM_DISABLE) is read once, when tqdm is imported.
    """
    from tqdm import std

    bar = std.tqdm(total=1, desc=label, unit="step", leave=True)
    try:
        with silenced_bars(lambda description: follow(bar, description) if follow is not None else None):
            yield bar
        bar.update(bar.total - bar.n)  # done: full whatever the libraries reported
    finally:
        bar.close()


@contextlib.contextmanager
def silenced_bars(seen: Callable[[str], None] | None = None) -> Iterator[None]:
    """Every tqdm bar created meanwhile is disabled (`seen(description)` hears of each); tqdm's __init__ is
    restored on exit, even on an error. For library bars with no switch of their own (compressed-tensors'
    "Decompressing model" when a quantized folder loads)."""
    from tqdm import std

    defined = std.tqdm.__dict__["__init__"]  # as the class holds it (tqdm wraps it in a partialmethod)
    original = std.tqdm.__init__

    def silenced(self, *args, **kwargs):
        original(self, *args, **{**kwargs, "disable": True})
        if seen is not None:
            seen(str(kwargs.get("desc") or ""))

    std.tqdm.__init__ = silenced
    try:
        yield
    finally:
        std.tqdm.__init__ = defined
