"""python -m dharma_train.data: generate and contact-sheet, end to end in a subprocess, and bad arguments."""

import subprocess
import sys

import pytest
from PIL import Image

from dharma_train.data.__main__ import main
from dharma_train.data.pages import load_pages


def test_generate_then_contact_sheet_from_the_command_line(tmp_path):
    out, sheet = tmp_path / "pages", tmp_path / "sheet.png"
    done = subprocess.run([sys.executable, "-m", "dharma_train.data", "generate", "--out", str(out), "--pages", "4",
                           "--families", "printed,legal", "--size", "400", "--workers", "2", "--seed", "7"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "4 pages (printed, legal; task structured; 283x400)" in done.stdout
    pages = load_pages(out)
    assert [page.family for page in pages] == ["printed", "legal"] * 2
    with Image.open(pages.pages[0].image) as image:
        assert image.size == (283, 400)
    done = subprocess.run([sys.executable, "-m", "dharma_train.data", "contact-sheet", str(out), "--out", str(sheet),
                           "--count", "3"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    with Image.open(sheet) as image:
        assert image.format == "PNG" and image.width > image.height > 400


def test_general_task_defaults_to_general_pages(tmp_path):
    assert main(["generate", "--out", str(tmp_path), "--pages", "2", "--task", "general", "--size", "300"]) == 0
    assert {(page.family, page.task) for page in load_pages(tmp_path)} == {("general", "general")}


def test_same_seed_same_files_from_the_cli(tmp_path):
    for name in ("a", "b"):
        assert main(["generate", "--out", str(tmp_path / name), "--pages", "3", "--size", "300", "--seed", "5",
                     "--format", "jpg"]) == 0
    assert [p.read_bytes() for p in sorted((tmp_path / "a" / "images").iterdir())] == \
        [p.read_bytes() for p in sorted((tmp_path / "b" / "images").iterdir())]


@pytest.mark.parametrize("arguments, message", [
    (["generate", "--out", "X", "--pages", "2", "--families", "printed,poster"], "poster"),
    (["generate", "--out", "X", "--pages", "2", "--task", "markdown"], "invalid choice"),
    (["generate", "--out", "X", "--pages", "2", "--size", "10"], "at least 56"),
    (["generate", "--out", "X", "--pages", "zero"], "invalid int"),
])
def test_bad_arguments_exit_2_naming_the_problem(tmp_path, capsys, arguments, message):
    arguments = [str(tmp_path / "x") if value == "X" else value for value in arguments]
    with pytest.raises(SystemExit) as stopped:
        main(arguments)
    assert stopped.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("arguments, message", [
    (["generate", "--out", "X", "--pages", "0"], "at least 1"),
    (["generate", "--out", "X", "--pages", "2", "--workers", "0"], "workers"),
    (["contact-sheet", "MISSING", "--out", "X"], "does not exist"),
    (["contact-sheet", "MISSING", "--out", "X", "--count", "0"], "count"),
])
def test_errors_from_the_library_exit_2_without_a_traceback(tmp_path, capsys, arguments, message):
    arguments = [str(tmp_path / "x") if value == "X" else str(tmp_path / "nope") if value == "MISSING" else value
                 for value in arguments]
    assert main(arguments) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err
