"""The command line as users run it: `python -m dharma_train ...` in a subprocess, offline."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


def _run(*args, cwd, env=None, timeout=600):
    environment = {**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}
    return subprocess.run([sys.executable, "-m", "dharma_train", *args], cwd=cwd, env=environment,
                          capture_output=True, text=True, timeout=timeout)


def test_unknown_recipe_is_one_line_exit_2_with_the_known_ones(tmp_path):
    result = _run("recipe=tin", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.strip().splitlines() == [
        "dharma_train: error: unknown recipe 'tin' (did you mean tiny?); known recipe options: ablation_3b, "
        "ablation_7b, nanonets_3b, olmocr2_7b, qwen25vl_3b, qwen25vl_7b, tiny, tiny_ablation, tiny_random; or give a "
        "recipe file path first"]


def test_help_is_dharma_trains_own_and_imports_no_torch(tmp_path):
    code = ("import runpy, sys; sys.argv = ['dharma_train', '--help']; "
            "runpy.run_module('dharma_train', run_name='__main__'); print('torch imported:', 'torch' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("dharma_train 0.1.0: turn a Qwen2.5-VL model into a document-OCR specialist")
    assert "Hydra" not in result.stdout.splitlines()[0]
    for expected in ("plan ", "env ", "  tiny            the default, the whole specialization ladder", "  dpo  ",
                     "'~stages.dpo'", "quick smoke run", "outputs: output_dir"):
        assert expected in result.stdout, expected
    assert result.stdout.strip().endswith("torch imported: False")


def test_version_and_env(tmp_path):
    version = _run("--version", cwd=tmp_path)
    assert (version.returncode, version.stdout) == (0, "dharma_train 0.1.0\n")
    env = _run("env", cwd=tmp_path)
    assert env.returncode == 0, env.stderr
    import torch

    assert f"- torch: {torch.__version__}" in env.stdout and "- device: " in env.stdout
    assert "- bitsandbytes: " in env.stdout and "- dharma_train version: 0.1.0" in env.stdout


def test_plan_from_a_recipe_file_validates_plans_and_writes_nothing(tmp_path):
    recipe = tmp_path / "my_recipe.yaml"
    recipe.write_text("defaults:\n  - /recipe@_here_: tiny\n  - _self_\n")
    out = tmp_path / "run"
    result = _run("plan", str(recipe), f"output_dir={out}", "~stages.dpo", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "name: my_recipe" in result.stdout
    assert "[3/4] quantize (quantize): runs, because general_ocr before it runs" in result.stdout
    assert "ready: nothing was trained or written" in result.stdout
    assert not out.exists()


@pytest.mark.parametrize("words, message", [
    (("plan", "trainer.performance.lora_4bit=true"),
     "trainer.performance.lora_4bit=true applies to LoRA stages only, and stages.general_ocr, stages.structured, "
     "stages.dpo fine-tune all weights (optimization.method=full)"),
    (("data.synthetic.train_pages=abc", "--cfg", "job"), "config key 'data.synthetic.train_pages'"),
    (("lr=1e-4",), "unknown config key 'lr' (did you mean stages."),
    (("stages.strucured.optimization.max_steps=3",), "(did you mean stages.structured.optimization.max_steps?)"),
    (("my_recipe.yml",), "recipe file my_recipe.yml does not exist"),
])
def test_refusals_are_one_line_with_exit_2(tmp_path, words, message):
    result = _run(*words, cwd=tmp_path)
    assert result.returncode == 2, result.stdout[-1000:] + result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("dharma_train: error:")]
    assert len(errors) == 1 and message in errors[0], result.stderr[-2000:]
    assert "Traceback" not in result.stderr


def test_nanonets_without_cache_or_hub_stops_with_one_message_before_any_work(tmp_path):
    out = tmp_path / "run"
    result = _run("recipe=nanonets_3b", f"output_dir={out}", cwd=tmp_path, env={"HF_HOME": str(tmp_path / "hf")})
    assert result.returncode == 2
    output = result.stdout + result.stderr
    assert "nanonets/Nanonets-OCR2-3B is not in the Hugging Face cache" in output
    assert "Traceback" not in output
    assert not (out / "data").exists() and not (out / "summary.json").exists()


@pytest.mark.parametrize("override, message", [
    ("stages.structured.optimization.max_steps=abc", "stages.structured.optimization.max_steps"),
    ("data.train=/no/such/folder", "data source /no/such/folder does not exist"),
    ("stages.structured.data=/no/stage/data", "data source /no/stage/data does not exist"),
    ("stages.dpo.pairs=/no/pairs.jsonl", "preference pairs file /no/pairs.jsonl does not exist"),
])
def test_bad_input_is_one_clear_line_not_a_traceback(tmp_path, override, message):
    result = _run(override, f"output_dir={tmp_path / 'run'}", cwd=tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 2, output[-2000:]
    assert message in output
    assert "Traceback" not in output
    assert not (tmp_path / "run" / "00_base").exists(), "it failed before any model was loaded"


def _bad_pairs_file(folder: Path, pages) -> Path:
    """A pairs.jsonl of 4 good rows and 2 bad ones: identical answers on line 5, a missing image on line 6."""
    from dharma_train.data.pairs import loop_pairs, save_pairs

    path = save_pairs(loop_pairs(pages, "structured", seed=0)[:6], folder)
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    rows[4]["rejected"] = rows[4]["chosen"]
    rows[5]["image"] = "gone.png"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


ONLY_DPO = ["~stages.general_ocr", "~stages.structured", "~stages.quantize", "~stages.export",
            "stages.dpo.optimization.max_steps=1", "stages.dpo.optimization.batch_size=2",
            "data.synthetic.train_pages=4", "data.synthetic.eval_pages=2", "evaluation.max_new_tokens=8"]


def test_strict_stops_at_the_first_bad_pair_naming_file_line_and_reason(tmp_path, pages):
    pairs = _bad_pairs_file(tmp_path / "given", pages[0])
    result = _run(*ONLY_DPO, f"stages.dpo.pairs={pairs}", "data.strict=true", f"output_dir={tmp_path / 'run'}",
                  cwd=tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 2, output[-2000:]
    errors = [line for line in output.splitlines() if "[ERROR]" in line]
    assert len(errors) == 1 and errors[0].endswith(
        f" - {pairs}:5 (id 'train-00004'): identical_pair: 'chosen' and 'rejected' are identical (without "
        f"data.strict, such rows are skipped and reported)"), errors
    assert "Traceback" not in output and not (tmp_path / "run" / "00_base").exists()


@pytest.mark.slow
def test_bad_pairs_are_skipped_listed_and_counted_in_the_report_like_bad_pages(tmp_path, pages):
    pairs = _bad_pairs_file(tmp_path / "given", pages[0])
    out = tmp_path / "run"
    result = _run(*ONLY_DPO, f"stages.dpo.pairs={pairs}", f"output_dir={out}", cwd=tmp_path)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    assert f"data.stages.dpo.pairs {pairs} (jsonl): 6 rows: 4 used (0 fixed), 2 skipped" in result.stdout
    report = json.loads((out / "data" / "stages" / "dpo" / "pairs" / "load_report.json").read_text())
    assert [(row["row"], row["reason"]) for row in report["sources"][0]["skipped_rows"]] == [
        (f"{pairs}:5", "identical_pair"), (f"{pairs}:6", "missing_file")]
    made = (out / "report.md").read_text().split("## How this run was made")[1]
    assert f"- data: `stages.dpo.pairs`: `{pairs}`" in made
    assert f"- loaded: `{pairs}` (stages.dpo.pairs): 6 rows, 2 skipped (identical_pair 1, missing_file 1)" in made
    summary = json.loads((out / "summary.json").read_text())
    assert summary["entries"][-1]["train"]["pairs"] == 4, "the stage trained on the rows the report kept"
    trained = json.loads((out / "01_dpo" / "pairs_summary.json").read_text())
    assert trained["folder"] == "run:data/stages/dpo/pairs", "the stage trained on the loaded set, not a second copy"
    again = _run(*ONLY_DPO, f"stages.dpo.pairs={pairs}", f"output_dir={out}", cwd=tmp_path)
    assert again.returncode == 0, (again.stdout + again.stderr)[-3000:]
    assert "stage dpo: reused, it finished earlier with the same inputs" in again.stdout, "loaded again, same key"


def test_resolved_config_prints_offline(tmp_path):
    result = _run("recipe=nanonets_3b", "--cfg", "job", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "path: nanonets/Nanonets-OCR2-3B" in result.stdout


def test_default_command_runs_the_whole_tiny_ladder_and_the_model_learns(tmp_path):  # the one ladder CI always runs
    """The README's first command: no arguments, the tiny recipe (the shipped reader's ladder), a report; the
    structured point reads (issue 29: CER at most 0.35 and a gain of at least 0.4 over the base; measured 0.16-0.29
    and 0.61-0.74 on 3 seeds, docs/experiments/tiny-reader.md)."""
    out = tmp_path / "run"
    result = _run(f"output_dir={out}", cwd=tmp_path, timeout=900)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    from dharma_train.reporting.comparison import read_summary

    summary = read_summary(out)  # model paths, stored relative to the run folder, resolved against it
    entries = {entry["stage"]: entry for entry in summary["entries"]}
    assert list(entries) == ["base", "general_ocr", "structured", "dpo", "quantize"]
    base_cer = entries["base"]["metrics"]["cer"]
    structured = entries["structured"]["metrics"]
    assert entries["base"]["model"].rstrip("/").endswith("models/tiny_reader"), "the default starts from the reader"
    assert structured["cer"] <= min(base_cer - 0.4, 0.35), (base_cer, structured["cer"])
    assert structured["json_valid_rate"] >= 0.5 > entries["base"]["metrics"]["json_valid_rate"]
    assert structured["quality_score"] > entries["base"]["metrics"]["quality_score"] + 0.1
    assert (out / "scores.png").is_file() and (out / "degeneration.png").is_file()
    report = (out / "report.md").read_text()
    assert "| base | base | base |" in report and "| dpo | dpo |" in report
    assert f"{base_cer:.3f}" in report and f"{structured['cer']:.3f}" in report
    for name in ("general_ocr", "structured", "dpo", "quantize"):  # a stage that passes its input on has no folder
        assert (Path(entries[name]["model"]) / "model.safetensors").is_file()
    # Properties that hold on any machine (floating-point results differ between CPUs): the default DPO stage keeps
    # the JSON valid; every kept stage passed the gate against the point it started from; a rejected stage is in
    # the report and the run went on from the point before it; export ships the point the run ended on.
    from dharma_train.gate import GateConfig, regressions

    assert entries["dpo"]["metrics"]["json_valid_rate"] >= structured["json_valid_rate"] - 0.02
    carried_on_from = "base"
    for entry in summary["entries"][1:]:
        assert entry["gate"]["against"] == carried_on_from, "each stage starts from the last point kept"
        if entry["gate"]["verdict"] == "skipped":  # passed its input on: logged, its input's numbers, no evaluation
            assert entry["metrics"] == entries[carried_on_from]["metrics"] and entry["gate"]["reason"]
            said = f"stage {entry['stage']} skipped: it passed {carried_on_from} on untrained"
            assert said in result.stdout + result.stderr
            assert f"| {entry['stage']} | {entry['kind']} | **skipped** |" in report
            continue
        found = regressions(entry["kind"], entry["metrics"], entries[carried_on_from]["metrics"], GateConfig())
        assert entry["gate"]["verdict"] == ("rejected" if found else "kept"), entry["gate"]
        if found:
            assert f"**stage {entry['stage']} REJECTED" in report
        else:
            carried_on_from = entry["stage"]
    carried = [e["stage"] for e in summary["entries"] if e["gate"]["verdict"] not in ("rejected", "skipped")]
    assert summary["final_point"] == carried[-1] == summary["not_evaluated"][0]["from"]
    quantized = entries["quantize"]
    assert quantized["train"]["scheme"] == "awq_w4a16"
    assert quantized["metrics"]["weights_megabytes"] < entries["dpo"]["metrics"]["weights_megabytes"]
    assert "| quantize | quantize |" in report
    assert summary["not_evaluated"][0]["stage"] == "export"
    card = (out / "05_export" / "model" / "README.md").read_text()
    assert f"These weights are those of `{summary['final_point']}`" in card
    if summary["final_point"] == "quantize":
        assert f"{quantized['metrics']['quality_score']:.3f}" in card and "4-bit int weights (group 32)" in card
    # the saved model is an ordinary checkpoint
    loaded = subprocess.run(
        [sys.executable, "-c", "import sys; from transformers import AutoModelForImageTextToText as M;"
         f"M.from_pretrained(r'{entries['dpo']['model']}'); print('dharma_train' in sys.modules)"],
        capture_output=True, text=True, check=True)
    assert loaded.stdout.strip() == "False"
    # What the console shows is what a user can act on: no library's nested bars (transformers' shard writing,
    # llm-compressor's grid search: 150+ cursor-up lines before), warnings only dharma_train's own (the gate's).
    console = result.stdout + result.stderr
    assert console.count("\x1b[A") <= 1 and "Writing model shards" not in console, console.count("\x1b[A")
    warned = [line for line in console.splitlines() if "[WARNING]" in line or "Warning:" in line]
    assert all("[dharma_train" in line for line in warned), warned


@pytest.mark.skipif(__import__("importlib").util.find_spec("bitsandbytes") is not None,
                    reason="bitsandbytes is installed here: lora_4bit can apply")
def test_lora_4bit_without_bitsandbytes_is_refused_before_any_work(tmp_path):
    lora = [f"stages.{name}.optimization.method=lora" for name in ("general_ocr", "structured", "dpo")]
    result = _run("plan", "trainer.performance.lora_4bit=true", *lora, f"output_dir={tmp_path / 'run'}", cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "machine: REFUSED: trainer.performance.lora_4bit=true needs bitsandbytes" in result.stdout
    assert result.stderr.strip().endswith("(the frozen base then loads in 16 or 32 bits instead of 4)")


def test_an_unexpected_error_keeps_its_traceback_and_says_how_to_resume(tmp_path):
    """A bug (here: a stage raising RuntimeError) is not one of ours to explain, but the user still needs the
    resume command: finished stages are kept."""
    script = ("import sys, dharma_train.run as run\n"
              "def broken(config, argv=None):\n    raise RuntimeError('a bug in a stage')\n"
              "run.execute = broken\n"
              "from dharma_train.__main__ import main\n"
              f"sys.argv = ['dharma_train', 'output_dir={tmp_path / 'run'}', 'hydra.run.dir={tmp_path / 'hydra'}']\n"
              "main()\n")
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True,
                            timeout=300, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert result.returncode == 1
    printed = result.stdout + result.stderr  # the log goes where Hydra's console handler puts it
    assert "RuntimeError: a bug in a stage" in printed
    assert "the run stopped on an unexpected error" in printed
    command = printed.split("resume with:\n  ", 1)[1].splitlines()[0]
    assert command.startswith("python -m dharma_train ") and f"output_dir={tmp_path / 'run'}" in command
