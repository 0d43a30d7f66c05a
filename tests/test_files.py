import json

from dharma_train.files import write_json_atomically, write_jsonl_atomically, write_text_atomically


def test_atomic_writes_replace_whole_files_and_leave_no_temporaries(tmp_path):
    target = tmp_path / "sub" / "report.md"
    write_text_atomically(target, "old")
    write_text_atomically(target, "novo relatório")
    assert target.read_text(encoding="utf-8") == "novo relatório"
    write_json_atomically(tmp_path / "a.json", {"ç": 1})
    write_jsonl_atomically(tmp_path / "b.jsonl", ({"i": i} for i in range(3)))
    assert json.loads((tmp_path / "a.json").read_text()) == {"ç": 1}
    assert [json.loads(line)["i"] for line in (tmp_path / "b.jsonl").read_text().splitlines()] == [0, 1, 2]
    assert sorted(p.name for p in tmp_path.rglob("*") if "tmp" in p.name) == []


# A writer that rewrites a file and a folder forever, alternating between two versions (all "A" or all "B").
# files.py is loaded on its own: no torch import, so the loop starts in a fraction of a second.
WRITER = """
import importlib.util, itertools, pathlib, sys
spec = importlib.util.spec_from_file_location("files", sys.argv[1])
files = importlib.util.module_from_spec(spec)
spec.loader.exec_module(files)
out = pathlib.Path(sys.argv[2])

def model(letter):
    def write(folder):
        folder.mkdir()
        (folder / "weights.bin").write_text(letter * 1_000_000)
        (folder / "config.json").write_text(letter * 100)
    return write

for i in itertools.count():
    letter = "AB"[i % 2]
    files.write_text_atomically(out / "summary.json", letter * 300_000)
    files.write_folder_atomically(out / "model", model(letter))
    if i == 1:
        print("ready", flush=True)
"""


def _whole(text: str, length: int) -> bool:
    return len(text) == length and text in ("A" * length, "B" * length)


def test_a_writer_killed_at_any_moment_leaves_old_or_new_never_a_mix(tmp_path):
    """SIGKILL at ten different moments of a rewrite loop; after each, every file is one whole version."""
    import random
    import signal
    import subprocess
    import sys
    import time

    import dharma_train.files as files

    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    rng = random.Random(0)
    mid_write = 0
    for attempt in range(10):
        out = tmp_path / f"run{attempt}"
        writer = subprocess.Popen([sys.executable, str(script), files.__file__, str(out)], stdout=subprocess.PIPE,
                                  text=True)
        assert writer.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0, 0.2))
        writer.send_signal(signal.SIGKILL)
        writer.wait()
        mid_write += any(".tmp" in p.name or p.name.endswith(".old") for p in out.iterdir())
        assert _whole((out / "summary.json").read_text(), 300_000)
        model = out / "model"
        if model.exists():  # absent only between the two renames, with the old version kept in model.old
            letter = (model / "config.json").read_text()[0]
            assert _whole((model / "weights.bin").read_text(), 1_000_000)
            assert (model / "config.json").read_text() == letter * 100
            assert (model / "weights.bin").read_text()[0] == letter
        else:
            assert (out / "model.old" / "config.json").is_file()
    assert mid_write, "no kill landed inside a write: the test proved nothing"


def test_unreadable_json_reads_as_none(tmp_path):
    from dharma_train.files import read_json_or_none

    (tmp_path / "cut.json").write_text('{"entries": [1, 2')
    assert read_json_or_none(tmp_path / "cut.json") is None
    assert read_json_or_none(tmp_path / "missing.json") is None
    write_json_atomically(tmp_path / "ok.json", {"a": 1})
    assert read_json_or_none(tmp_path / "ok.json") == {"a": 1}


def test_temporary_names_are_unique_per_process_and_call(tmp_path):
    """Two runs into one folder once shared `.scores.png.tmp.png`; each write now has its own temporary name."""
    from dharma_train.files import atomic_path

    target = tmp_path / "scores.png"
    with atomic_path(target) as first, atomic_path(target) as second:
        assert first != second and first.suffix == second.suffix == ".png"
        first.write_text("a")
        second.write_text("b")
    assert target.read_text() == "a", "the outer write, finishing last, wins"
    assert [p.name for p in tmp_path.iterdir()] == ["scores.png"]


# A child under a 1 MiB file-size limit (SIGXFSZ ignored, so an oversized write fails with EFBIG, as a full disk
# fails with ENOSPC) writes a file and a model folder too big for it; it prints each error's type and message.
FILE_SIZE_LIMIT = """
import resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, resource.RLIM_INFINITY))
import torch
from safetensors.torch import save_file
from dharma_train import files
out = __import__("pathlib").Path(sys.argv[1])
for name, write in [
    ("text", lambda: files.write_text_atomically(out / "big.json", "x" * (2 << 20))),
    ("safetensors", lambda: files.write_folder_atomically(
        out / "model", lambda tmp: (tmp.mkdir(), save_file({"w": torch.zeros(1 << 20)}, tmp / "model.safetensors")),
        needed_bytes=4 << 20)),
    ("torch.save", lambda: files.write_folder_atomically(
        out / "ckpt", lambda tmp: (tmp.mkdir(), torch.save({"w": torch.zeros(1 << 20)}, tmp / "optimizer.pt")))),
    ("copytree", lambda: files.write_folder_atomically(  # the export of a full or quantized model copies its folder
        out / "export", lambda tmp: __import__("shutil").copytree(sys.argv[2], tmp), needed_bytes=2 << 20)),
]:
    try:
        write()
    except Exception as error:
        print(name, type(error).__name__, error, flush=True)
"""


def test_running_out_of_room_is_one_clear_error_and_leaves_no_partial_file(tmp_path):
    import subprocess
    import sys

    script = tmp_path / "limited.py"
    script.write_text(FILE_SIZE_LIMIT)
    out = tmp_path / "out"
    out.mkdir()
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    (model / "model.safetensors").write_bytes(b"w" * (2 << 20))
    done = subprocess.run([sys.executable, str(script), str(out), str(model)], capture_output=True, text=True,
                          timeout=120)
    lines = done.stdout.splitlines()
    assert len(lines) == 4, done.stdout + done.stderr
    for line, what in zip(lines, ("big.json", "model", "ckpt", "export")):
        assert f"DiskFullError writing {out / what} ran out of room" in line, line
        assert " are free in " in line and "at most 1.0 MB (ulimit -f)" in line, line
    assert "it needs about 4.0 MB" in lines[1] and "File too large" in lines[0]
    assert lines[3].endswith("([Errno 27] File too large copying model.safetensors; this process may write files of "
                             "at most 1.0 MB (ulimit -f))"), "one reason and the file, not a clipped list of tuples"
    assert list(out.iterdir()) == [], "temporary files and folders are removed, nothing partial is left"


def test_with_default_modes_undoes_safetensors_0600(tmp_path):
    import os

    from dharma_train.files import with_default_modes

    weights = tmp_path / "model.safetensors"
    weights.write_bytes(b"w")
    weights.chmod(0o600)
    umask = os.umask(0o022)
    try:
        with_default_modes(tmp_path)
    finally:
        os.umask(umask)
    assert weights.stat().st_mode & 0o777 == 0o644


def test_file_hash_sees_any_change_of_content(tmp_path):
    from dharma_train.files import file_hash

    path = tmp_path / "w.bin"
    path.write_bytes(b"a" * 20_000_000)
    before = file_hash(path)
    with path.open("r+b") as handle:
        handle.seek(12_345_678)
        handle.write(b"b")
    assert file_hash(path) != before and len(before) == 32
