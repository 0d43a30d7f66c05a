"""Stopping cleanly on SIGTERM or SIGINT (a preempted machine, a scheduler's time limit, Ctrl-C).

During training the first signal lets the current optimizer step finish, saves a checkpoint and stops the stage;
anywhere else it stops the run at once, which loses nothing because every finished file is already on disk. Either
way the run ends with `Interrupted` and the command that resumes it. A second signal exits immediately: the
handlers are reset to the system default, so it ends the process even inside a long GPU or disk operation.

    with handle_signals() as stop:
        trainer.add_callback(StopOnSignal(stop))
        with stop.graceful():
            trainer.train()
        stop.raise_if_requested("stage dpo")
"""

from __future__ import annotations

import logging
import signal
import threading
from contextlib import contextmanager

from transformers import TrainerCallback

from dharma_train.errors import Interrupted

log = logging.getLogger(__name__)

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopRequest:
    """What the signal handler saw: which signal, and whether a training loop will stop at its next step."""

    def __init__(self):
        self.signal_number: int | None = None
        self.training = False

    @property
    def requested(self) -> bool:
        return self.signal_number is not None

    @property
    def signal_name(self) -> str:
        return signal.Signals(self.signal_number).name if self.signal_number else ""

    @contextmanager
    def graceful(self):
        """Inside: a first signal is only recorded, for StopOnSignal to act on at the end of the step."""
        self.training = True
        try:
            yield self
        finally:
            self.training = False

    def raise_if_requested(self, where: str, detail: str = "") -> None:
        if self.requested:
            raise Interrupted(f"{where} stopped by {self.signal_name}{detail}", self.signal_number)

    def _on_signal(self, number: int, frame) -> None:
        for each in SIGNALS:  # the next signal, of either kind, ends the process at once
            signal.signal(each, signal.SIG_DFL)
        self.signal_number = number
        name = signal.Signals(number).name
        if self.training:
            log.warning("%s received: saving a checkpoint after this step, then stopping (send it again to exit "
                        "at once; the last complete checkpoint is kept)", name)
            return
        raise Interrupted(f"stopped by {name}", number)


_active: StopRequest | None = None


@contextmanager
def handle_signals():
    """Install the handlers for the duration (main thread only; nested calls share the outer request)."""
    global _active
    if _active is not None:
        yield _active
        return
    request = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield request  # signals are delivered to the main thread only: nothing to install here
        return
    previous = {number: signal.getsignal(number) for number in SIGNALS}
    for number in SIGNALS:
        signal.signal(number, request._on_signal)
    _active = request
    try:
        yield request
    finally:
        _active = None
        for number, handler in previous.items():
            signal.signal(number, handler)


class StopOnSignal(TrainerCallback):
    """After the step in which a signal arrived: save a checkpoint (whatever the save schedule) and stop training."""

    def __init__(self, request: StopRequest):
        self.request = request

    def on_train_begin(self, args, state, control, train_dataloader=None, **kwargs):
        """Data-loader workers leave SIGTERM and SIGINT to this process: a scheduler signals every process of the
        job, and a worker killed by it would fail the step before the checkpoint is saved."""
        loader = getattr(train_dataloader, "base_dataloader", train_dataloader)  # accelerate wraps the DataLoader
        if getattr(loader, "num_workers", 0) > 0 and not isinstance(loader.worker_init_fn, IgnoreStopSignals):
            loader.worker_init_fn = IgnoreStopSignals(loader.worker_init_fn)
        return control

    def on_step_end(self, args, state, control, **kwargs):
        if self.request.requested:
            control.should_save = True
            control.should_training_stop = True
        return control


class IgnoreStopSignals:
    """A data-loader worker_init_fn: ignore SIGTERM and SIGINT (the trainer's process stops the workers itself),
    then run the loader's own init function. A class, not a closure, so spawned workers can unpickle it."""

    def __init__(self, then=None):
        self.then = then

    def __call__(self, worker_id: int) -> None:
        for number in SIGNALS:
            signal.signal(number, signal.SIG_IGN)
        if self.then is not None:
            self.then(worker_id)
