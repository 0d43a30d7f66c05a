"""Atomic writes: a temporary file renamed into place, so a killed run leaves the old file or the new, never half.

Files are flushed to disk (fsync) before the rename, so even a power cut cannot leave a renamed but empty file.
Folders (a saved model) are written whole into a temporary sibling, synced, then swapped in by rename.
Temporary file names are unique per process and thread, so two writers never share one.
A write that runs out of disk (or into the file-size limit) removes its temporary and raises DiskFullError,
which names what was being written, the space it needed and the space free.
"""

from __future__ import annotations

import errno
import json
import os
import resource
import shutil
import sys
import threading
import uuid
from collections.abc import Callable, Iterable
from contextlib import contextmanager
from pathlib import Path

# What running out of room looks like: the errno of an OSError, or the text of the errors torch and safetensors
# raise instead (safetensors: "I/O error: File too large (os error 27)"; torch.save: "file write failed", or
# "unexpected pos" when a write came up short).
DISK_FULL_ERRNOS = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT}
DISK_FULL_TEXTS = ("os error 28", "os error 27", "os error 122", "No space left", "File too large",
                   "Disk quota exceeded", "file write failed", "unexpected pos")
HASH_BLOCK = 8 * 1024**2


@contextmanager
def atomic_path(path: str | Path, sync: bool = True):
    """Yield a temporary path beside `path`; on success it is synced and renamed onto `path`, on failure removed.

    sync=False skips the fsync (many small files, e.g. generated page images, where a rename suffices).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{unique_suffix()}{path.suffix}")
    try:
        with disk_full_as_error(f"writing {path}", path.parent):
            yield tmp
            if sync:
                _sync_file(tmp)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def unique_suffix() -> str:
    """`tmp<pid>-<random>`: no other process or thread picks the same temporary name."""
    return f"tmp{os.getpid()}-{uuid.uuid4().hex[:8]}"


def write_text_atomically(path: str | Path, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_bytes_atomically(path: str | Path, data: bytes) -> Path:
    """Safe from several threads at once: each writes its own temporary file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{unique_suffix()}-{threading.get_ident()}")
    try:
        with disk_full_as_error(f"writing {path}", path.parent, len(data)):
            tmp.write_bytes(data)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_json_atomically(path: str | Path, data) -> Path:
    return write_text_atomically(path, json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")


def write_jsonl_atomically(path: str | Path, rows: Iterable[dict]) -> Path:
    return write_text_atomically(path, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))


def not_a_file(path: Path) -> str:
    """Why `path` cannot be read as a file, in words: a folder is not reported as missing."""
    return f"{path} is a folder, not a file" if path.is_dir() else f"{path} does not exist"


def read_json_or_none(path: str | Path):
    """A JSON file's content, or None when it is missing or unreadable (a file cut short by a crash reads as None)."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def write_folder_atomically(target: str | Path, write: Callable[[Path], None], needed_bytes: int | None = None) -> Path:
    """`write(tmp)` fills a temporary sibling folder, which then replaces `target` by rename.

    A folder cannot be renamed over a non-empty one, so the old folder is first moved aside to `<name>.old` and
    deleted after the swap: whenever the run dies, `target` is absent, the old folder or the new one, never a mix.
    (`<name>.tmp` is shared by name: one run holds the run folder's lock, run_lock.py.) `needed_bytes`, the
    expected size, goes into the message when the disk fills; the partial folder is removed then.
    """
    target = Path(target)
    tmp, old = target.with_name(target.name + ".tmp"), target.with_name(target.name + ".old")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        with disk_full_as_error(f"writing {target}", target.parent, needed_bytes):
            write(tmp)
            for file in tmp.rglob("*"):
                if file.is_file():
                    _sync_file(file)
    except Exception:
        shutil.rmtree(tmp, ignore_errors=True)  # give the space back: the next run starts this save again
        raise
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        target.rename(old)
    tmp.rename(target)
    shutil.rmtree(old, ignore_errors=True)
    return target


@contextmanager
def disk_full_as_error(what: str, folder: str | Path, needed_bytes: int | None = None):
    """Inside, an error from running out of disk or into the file-size limit becomes one DiskFullError line."""
    try:
        yield
    except Exception as error:
        if _explained(error) or not is_disk_full(error):
            raise
        from dharma_train.errors import DiskFullError  # here, not at the top: files.py loads without the package

        raise DiskFullError(describe_disk_full(what, folder, needed_bytes, error)) from error


def is_disk_full(error: BaseException) -> bool:
    if isinstance(error, OSError) and error.errno in DISK_FULL_ERRNOS:
        return True
    return any(text in str(error) for text in DISK_FULL_TEXTS)


def describe_disk_full(what: str, folder: str | Path, needed_bytes: int | None, error: BaseException) -> str:
    """'writing X ran out of room: it needs about 0.05 GB, 0.01 GB are free in /runs (File too large; ...)'."""
    folder = Path(folder)
    existing = next((p for p in (folder, *folder.parents) if p.exists()), Path("/"))
    free = shutil.disk_usage(existing).free
    needed = f"about {_size(needed_bytes)}" if needed_bytes else "more room"
    cause = _cause(error)
    limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    if limit != resource.RLIM_INFINITY:
        cause += f"; this process may write files of at most {_size(limit)} (ulimit -f)"
    return f"{what} ran out of room: it needs {needed}, {_size(free)} are free in {existing} ({cause})"


def _cause(error: BaseException) -> str:
    """The OS's reason in words; for a folder copy (shutil.Error, whose message is its whole list of failed files,
    clipped mid-path before), the first file's reason and how many files failed."""
    if isinstance(error, shutil.Error) and error.args and isinstance(error.args[0], list) and error.args[0]:
        failures = [entry for entry in error.args[0] if isinstance(entry, tuple) and len(entry) == 3]
        if failures:
            source, _, why = failures[0]
            more = f", and {len(failures) - 1} more file(s)" if len(failures) > 1 else ""
            reason = str(why).split(": '")[0]  # '[Errno 28] No space left on device', without the two paths
            return f"{reason} copying {Path(source).name}{more}"
    return getattr(error, "strerror", None) or str(error).splitlines()[0][:120]


def _size(size: int) -> str:
    return f"{size / 1024**3:.2f} GB" if size >= 1024**3 else f"{size / 1024**2:.1f} MB"


def with_default_modes(folder: str | Path) -> None:
    """Every file as a plain open() creates it (0666 less the umask), where a library wrote it 0600 (safetensors)."""
    umask = os.umask(0)
    os.umask(umask)
    for file in Path(folder).rglob("*"):
        if file.is_file():
            file.chmod(0o666 & ~umask)


def file_hash(path: str | Path, new_digest=None) -> str:
    """xxh3-128 (or `new_digest()`'s hash) of the whole file, read in 8 MiB blocks: 5.2-6.6 GiB/s from the page cache
    on the 2-core CI machine (docs/running-long-jobs.md), so checking a 16 GB model costs seconds, not minutes."""
    if new_digest is None:
        import xxhash

        new_digest = xxhash.xxh3_128
    digest = new_digest()
    block = bytearray(HASH_BLOCK)
    view = memoryview(block)
    with open(path, "rb", buffering=0) as handle:
        while read := handle.readinto(block):
            digest.update(view[:read])
    return digest.hexdigest()


def _explained(error: BaseException) -> bool:
    """A DharmaError (an inner write's DiskFullError) already says what happened; without the module, none exists."""
    errors = sys.modules.get("dharma_train.errors")
    return errors is not None and isinstance(error, errors.DharmaError)


def _sync_file(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())
