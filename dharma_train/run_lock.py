"""One writer per run folder: an exclusive lock on `output_dir/.dharma_train.lock`, held for the whole run.

The lock is an OS file lock (flock), so it goes away with its process however that process ends: a run killed
with SIGKILL leaves the file behind but no lock on it, and the next run takes it. The file names the holder (pid,
host, start time) for the message a second run prints. A second run into the same folder stops at once
with that message, or waits up to `trainer.lock_wait_seconds` for the first to end (a scheduler that requeues a
job whose first copy still runs).
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import socket
import time
from contextlib import contextmanager
from pathlib import Path

from dharma_train.errors import RunLockedError

log = logging.getLogger(__name__)

LOCK_FILE = ".dharma_train.lock"
POLL_SECONDS = 1.0
_held: set[Path] = set()  # folders this process holds: the CLI locks before Hydra writes, the run locks again


@contextmanager
def hold_run_lock(output_dir: str | Path, wait_seconds: float = 0):
    """Hold the run folder's lock inside the block; RunLockedError when another process holds it past the wait."""
    folder = Path(output_dir)
    folder.mkdir(parents=True, exist_ok=True)
    held = folder.resolve()
    if held in _held:  # this process holds it already (flock would refuse a second open file of the same process)
        yield
        return
    path = folder / LOCK_FILE
    with open(path, "a+", encoding="utf-8") as handle:
        if not _acquire(handle, path, folder, wait_seconds):
            yield  # a filesystem without locks (_acquire warned): the run goes on unguarded
            return
        _write_holder(handle)
        _held.add(held)
        try:
            yield
        finally:
            _held.discard(held)
            handle.truncate(0)
            fcntl.flock(handle, fcntl.LOCK_UN)


def _acquire(handle, path: Path, folder: Path, wait_seconds: float) -> bool:
    """True once the lock is held; False when the filesystem cannot lock; RunLockedError past the wait."""
    deadline = time.monotonic() + wait_seconds
    waiting = False
    while True:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            pass
        except OSError as error:  # ENOLCK, or EOPNOTSUPP where a network filesystem is mounted without locks
            if error.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
                raise
            log.warning("cannot lock %s (%s): nothing stops a second run from writing into %s at the same time",
                        path, error.strerror, folder)
            return False
        holder = describe_holder(path)
        if time.monotonic() >= deadline:
            raise RunLockedError(f"{folder} is in use by another dharma_train run ({holder}); wait for it to end or "
                                 f"stop it, or set trainer.lock_wait_seconds to wait for it")
        if not waiting:
            log.info("%s is in use by another run (%s); waiting up to %.0f s for it to end", folder, holder,
                     wait_seconds)
            waiting = True
        time.sleep(min(POLL_SECONDS, max(deadline - time.monotonic(), 0)))


HOLDER_PATIENCE_SECONDS = 5.0


def describe_holder(path: Path, patience: float = HOLDER_PATIENCE_SECONDS) -> str:
    """'pid 123 on host gpu-7, since 2026-12-01T09:00:00+0000': who holds the lock, from its file.

    The holder writes the file just after taking the lock, so a run that lost the race by microseconds can find it
    empty: wait up to `patience` seconds for the name before calling it unknown (a loaded 2-core machine can
    deschedule the holder between the two steps).
    """
    deadline = time.monotonic() + patience
    while True:
        try:
            holder = json.loads(path.read_text(encoding="utf-8"))
            return f"pid {holder.get('pid')} on host {holder.get('host')}, since {holder.get('since')}"
        except (OSError, ValueError):  # the holder is writing it this very moment
            if time.monotonic() >= deadline:
                return "pid unknown"
            time.sleep(0.02)


def _write_holder(handle) -> None:
    handle.seek(0)
    handle.truncate(0)
    json.dump({"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%dT%H:%M:%S%z")},
              handle)
    handle.write("\n")
    handle.flush()
