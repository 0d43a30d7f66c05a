"""Every command line of the package: the same flag names, help text on every option, `--help` without torch."""

import subprocess
import sys

import pytest

COMMANDS = {  # module -> the arguments its help is asked with
    "dharma_train": ["--help"],
    "dharma_train.evaluation": ["--help"],
    "dharma_train.data": ["generate", "--help"],
    "dharma_train.data.check": ["--help"],
    "dharma_train.reporting.comparison": ["--help"],
}
HELP = """
import contextlib, io, runpy, sys
out = io.StringIO()
sys.argv = ['prog', *{args!r}]
with contextlib.redirect_stdout(out):
    try:
        runpy.run_module({module!r}, run_name='__main__')
    except SystemExit:
        pass
print(out.getvalue())
print('TORCH', 'torch' in sys.modules)
"""


@pytest.mark.parametrize("module", list(COMMANDS))
def test_help_imports_no_torch_and_documents_every_option(module):
    done = subprocess.run([sys.executable, "-c", HELP.format(module=module, args=COMMANDS[module])],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    text, torch_line = done.stdout.rsplit("TORCH", 1)
    assert torch_line.strip() == "False", f"{module} --help imported torch"
    if module == "dharma_train":
        return
    lines = text.splitlines()
    options = [i for i, line in enumerate(lines) if line.startswith("  -") and "-h, --help" not in line]
    assert options
    for i in options:
        described_here = "  " in lines[i].strip()
        described_below = i + 1 < len(lines) and lines[i + 1].startswith(" " * 8) and lines[i + 1].strip()
        assert described_here or described_below, f"{module}: {lines[i]!r} has no help"
    if module != "dharma_train.data.check":
        assert "--output-dir" in text, f"{module} names its output folder --output-dir"


def test_evaluating_the_tiny_model_uses_the_tiny_recipes_evaluation_settings():
    from dharma_train.evaluation.__main__ import evaluation_config, parse_arguments

    tiny = evaluation_config(parse_arguments(["--model", "tiny"]))
    assert (tiny.max_new_tokens, tiny.batch_size) == (160, 16)
    other = evaluation_config(parse_arguments(["--model", "org/model", "--max-new-tokens", "64"]))
    assert (other.max_new_tokens, other.batch_size, other.task) == (64, 8, "structured")
