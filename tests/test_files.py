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
