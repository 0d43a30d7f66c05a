"""One writer per run folder: real processes holding, losing (SIGKILL) and waiting for the lock."""

import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from dharma_train.errors import RunLockedError
from dharma_train.run_lock import LOCK_FILE, hold_run_lock

# The package's modules without its __init__ (which imports torch): the holder starts in a fraction of a second.
HOLDER = """
import sys, time, types
package = types.ModuleType("dharma_train")
package.__path__ = [sys.argv[2]]
sys.modules["dharma_train"] = package
from dharma_train.run_lock import hold_run_lock
with hold_run_lock(sys.argv[1]):
    print("holding", flush=True)
    time.sleep(120)
"""


def _holder(folder):
    import dharma_train

    source = os.path.dirname(dharma_train.__file__)
    process = subprocess.Popen([sys.executable, "-c", HOLDER, str(folder), source], stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "holding"
    return process


def test_a_second_process_stops_at_once_naming_the_holder_and_kill_9_leaves_no_stale_lock(tmp_path):
    holder = _holder(tmp_path)
    try:
        started = time.monotonic()
        with pytest.raises(RunLockedError) as locked:
            with hold_run_lock(tmp_path):
                pass
        assert time.monotonic() - started < 1
        assert f"{tmp_path} is in use by another dharma_train run (pid {holder.pid} on host " \
               f"{socket.gethostname()}, since " in str(locked.value)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert (tmp_path / LOCK_FILE).is_file(), "the file stays; the OS dropped the lock with its process"
    with hold_run_lock(tmp_path):
        assert str(os.getpid()) in (tmp_path / LOCK_FILE).read_text()
    assert (tmp_path / LOCK_FILE).read_text() == "", "released: no holder named"


def test_asked_to_wait_a_second_process_takes_the_lock_once_the_first_dies(tmp_path):
    holder = _holder(tmp_path)
    killer = subprocess.Popen(["sh", "-c", f"sleep 1; kill -9 {holder.pid}"])
    started = time.monotonic()
    with hold_run_lock(tmp_path, wait_seconds=60):
        waited = time.monotonic() - started
    killer.wait(timeout=30)
    assert holder.wait(timeout=30) == -signal.SIGKILL
    assert 0.5 < waited < 30, "it waited for the holder, and took the lock once the holder was gone"
    with pytest.raises(RunLockedError):  # and a wait that runs out stops with the message
        holder = _holder(tmp_path)
        try:
            with hold_run_lock(tmp_path, wait_seconds=0.5):
                pass
        finally:
            holder.send_signal(signal.SIGKILL)
            holder.wait()


# A holder descheduled between taking the lock and naming itself (what a loaded 2-core CI machine did).
SLOW_NAMER = """
import fcntl, json, os, socket, sys, time
handle = open(sys.argv[1], "a+")
fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
print("locked", flush=True)
time.sleep(0.5)
handle.truncate(0)
json.dump({"pid": os.getpid(), "host": socket.gethostname(), "since": "now"}, handle)
handle.flush()
time.sleep(120)
"""


def test_a_run_that_loses_the_race_by_a_moment_still_names_the_holder(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", SLOW_NAMER, str(tmp_path / LOCK_FILE)], stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(RunLockedError) as locked:
            with hold_run_lock(tmp_path):
                pass
        assert f"(pid {holder.pid} on host {socket.gethostname()}, since now)" in str(locked.value)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()


def test_a_refused_run_writes_nothing_into_the_live_run_s_folder(tmp_path):
    """The command line takes the lock before Hydra writes `.hydra/` and its log: a second `python -m dharma_train`
    into a folder a live run holds stops in one line, and every file of the live run keeps its bytes."""
    live = tmp_path / "run"
    (live / ".hydra").mkdir(parents=True)
    written = {live / ".hydra" / "config.yaml": "seed: 0\n", live / ".hydra" / "overrides.yaml": "- seed=0\n",
               live / ".hydra" / "hydra.yaml": "hydra: {}\n", live / "__main__.log": "the live run's log\n"}
    for path, text in written.items():
        path.write_text(text)
    holder = _holder(live)
    try:
        refused = subprocess.run([sys.executable, "-m", "dharma_train", "trainer.seed=7", f"output_dir={live}"],
                                 capture_output=True, text=True, timeout=300, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    output = refused.stdout + refused.stderr
    assert refused.returncode == 2, output[-3000:]
    assert f"{live} is in use by another dharma_train run (pid {holder.pid} on host " in output
    assert "Traceback" not in output
    assert {path: path.read_text() for path in written} == written, "Hydra's files of the live run are untouched"
    assert sorted(p.name for p in live.rglob("*")) == sorted([".dharma_train.lock", ".hydra", "__main__.log",
                                                              "config.yaml", "hydra.yaml", "overrides.yaml"])
