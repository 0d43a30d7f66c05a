"""Signals: outside training the run stops at once; inside, the step finishes and a checkpoint is asked for; a
second signal ends the process immediately. (tests/test_resume.py does it to a real `python -m dharma_train`.)"""

import os
import signal
import subprocess
import sys
import time

import pytest
from transformers import TrainerControl

from dharma_train.errors import Interrupted
from dharma_train.training.preemption import StopOnSignal, handle_signals


def _deliver(number: int) -> None:
    os.kill(os.getpid(), number)
    time.sleep(0.05)  # Python runs the handler at the next bytecode boundary


def test_outside_training_a_signal_stops_the_run_with_its_exit_status():
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(Interrupted, match="stopped by SIGTERM") as stopped:
        with handle_signals():
            _deliver(signal.SIGTERM)
    assert stopped.value.exit_status == 143
    assert signal.getsignal(signal.SIGTERM) is before, "handlers are restored afterwards"


def test_during_training_the_first_signal_asks_for_a_checkpoint_and_a_stop():
    with handle_signals() as stop:
        with stop.graceful():
            _deliver(signal.SIGINT)
        assert stop.requested and stop.signal_name == "SIGINT"
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL, "a second signal of either kind ends it at once"
        control = StopOnSignal(stop).on_step_end(None, None, TrainerControl())
        assert control.should_save and control.should_training_stop
        with pytest.raises(Interrupted, match="stage x stopped by SIGINT at step 3"):
            stop.raise_if_requested("stage x", " at step 3")


def test_no_signal_no_stop():
    with handle_signals() as stop:
        control = StopOnSignal(stop).on_step_end(None, None, TrainerControl())
        assert not control.should_save and not control.should_training_stop
        stop.raise_if_requested("stage x")


SLEEPER = """
import time
from dharma_train.training.preemption import handle_signals
with handle_signals() as stop, stop.graceful():
    print("ready", flush=True)
    time.sleep(120)
"""


def test_a_second_signal_exits_at_once():
    sleeper = subprocess.Popen([sys.executable, "-c", SLEEPER], stdout=subprocess.PIPE, text=True)
    assert sleeper.stdout.readline().strip() == "ready"
    sleeper.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    assert sleeper.poll() is None, "the first signal only asks training to stop after its step"
    started = time.monotonic()
    sleeper.send_signal(signal.SIGTERM)
    assert sleeper.wait(timeout=30) == -signal.SIGTERM
    assert time.monotonic() - started < 5
