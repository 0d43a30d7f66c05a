"""Ablation: several bases through the same stages on shared pages, resumed base by base, compared in one table."""

import csv
import json
import os
import subprocess
import sys

import pytest
from hydra import compose, initialize_config_dir

from dharma_train.run_ablation import base_config, check_bases_reachable, unreachable_bases
from dharma_train.run_inputs import run_splits
from dharma_train.config import validate
from dharma_train.config_files import config_dir, register_recipes
from dharma_train.data.pages import load_pages
from dharma_train.errors import ConfigError, ModelUnavailableError
from dharma_train.run_paths import run_resolved


def _config(*overrides):
    register_recipes()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return validate(compose(config_name="config", overrides=list(overrides)))


def test_tiny_ablation_lists_a_base_without_and_one_with_the_ocr_rung(tmp_path):
    config = _config("recipe=tiny_ablation", f"output_dir={tmp_path}")
    assert {name: base.skip for name, base in config.ablation.bases.items()} == {
        "tiny": ["general_ocr", "quantize", "export"], "tiny_ocr_rung": ["quantize", "export"]}
    plain = base_config(config, "tiny", "/pages/train", "/pages/eval")
    rung = base_config(config, "tiny_ocr_rung", "/pages/train", "/pages/eval")
    assert list(plain.stages) == ["structured", "dpo"] and list(rung.stages) == ["general_ocr", "structured", "dpo"]
    assert plain.stages["structured"] == rung.stages["structured"], "the shared stages have the same settings"
    assert plain.output_dir == str(tmp_path / "tiny") and plain.name == "tiny_ablation-tiny"
    assert (plain.data.train, plain.data.eval) == ("/pages/train", "/pages/eval") == (rung.data.train, rung.data.eval)
    assert not plain.ablation.bases, "a base's own run is an ordinary run"


def test_an_ordinary_recipe_has_no_bases():
    assert _config("output_dir=/tmp/x").ablation.bases == {}


@pytest.mark.parametrize("override, message", [
    ("ablation.bases.tiny.skip=[structure]", r"ablation\.bases\.tiny\.skip names unknown stage\(s\) \['structure'\]"),
    ("ablation.bases.tiny.skip=[general_ocr,structured,dpo,quantize,export]",
     r"ablation\.bases\.tiny\.skip leaves no stage"),
    ("+ablation.bases.data.path=tiny", r"ablation\.bases\.data: a base name is a folder name"),
])
def test_bad_ablation_settings_name_their_key(override, message):
    with pytest.raises(ConfigError, match=message):
        _config("recipe=tiny_ablation", "output_dir=/tmp/x", override)


def test_an_unknown_ablation_key_is_refused():
    with pytest.raises(Exception, match="skipped"):
        _config("recipe=tiny_ablation", "output_dir=/tmp/x", "ablation.bases.tiny.skipped=[dpo]")


def test_every_unreachable_base_is_named_with_its_own_key(tmp_path, monkeypatch):
    """Not only the first, and with the key an ablation reads (ablation.bases.NAME.path), never model.path."""
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    config = _config("recipe=tiny_ablation", f"output_dir={tmp_path}", f"ablation.bases.tiny.path={tmp_path / 'no'}",
                     "ablation.bases.tiny_ocr_rung.path=nobody/no-such-model", "+ablation.bases.ok.path=tiny")
    assert list(unreachable_bases(config)) == ["tiny", "tiny_ocr_rung"]
    with pytest.raises(ModelUnavailableError) as raised:
        check_bases_reachable(config)
    message = str(raised.value)
    assert message.startswith("2 of 3 ablation bases cannot be loaded here: ")
    assert f"ablation.bases.tiny.path: model folder {tmp_path / 'no'} does not exist" in message
    assert "ablation.bases.tiny_ocr_rung.path: model nobody/no-such-model is not in the Hugging Face cache" in message
    assert "point ablation.bases.tiny_ocr_rung.path at a local folder" in message and "model.path at" not in message


def test_pages_are_generated_once_then_reused(tmp_path):
    config = _config("recipe=tiny_ablation", f"output_dir={tmp_path}", "data.synthetic.train_pages=3",
                     "data.synthetic.eval_pages=2")
    train, eval_pages = (pages.root for pages in run_splits(config))
    assert (train, eval_pages) == (tmp_path / "data" / "train", tmp_path / "data" / "eval")
    written = (tmp_path / "data" / "train" / "pages.jsonl").stat().st_mtime_ns
    assert tuple(pages.root for pages in run_splits(config)) == (train, eval_pages)
    assert (tmp_path / "data" / "train" / "pages.jsonl").stat().st_mtime_ns == written
    given = _config("recipe=tiny_ablation", f"output_dir={tmp_path / 'other'}", f"data.train={train}",
                    f"data.eval={eval_pages}")
    loaded = run_splits(given)  # checked once, in the ablation's folder, for every base
    assert [page.id for page in loaded[0]] == [page.id for page in load_pages(train)]
    assert not (tmp_path / "other" / "data" / "train").exists(), "nothing generated when both splits are given"


SHORT = ["data.synthetic.train_pages=16", "data.synthetic.eval_pages=6", "evaluation.max_new_tokens=96",
         "stages.general_ocr.optimization.max_steps=15", "stages.structured.optimization.max_steps=25",
         "stages.dpo.optimization.max_steps=2"]


def _cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "dharma_train", *args], cwd=cwd,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"}, capture_output=True, text=True, timeout=1800)


@pytest.mark.slow
def test_tiny_ablation_end_to_end_writes_the_comparison_and_resumes(tmp_path):
    """Shortened stages (tens of steps): the table's rows are both bases' summary points; a rerun reuses every stage
    of both, a rerun with a changed stage setting re-trains that stage and those after it in both.

    About a minute of two free cores; the stages are too short to learn much, so only the bookkeeping is checked."""
    out = tmp_path / "ablation"
    result = _cli("recipe=tiny_ablation", f"output_dir={out}", *SHORT, cwd=tmp_path)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    summaries = {base: json.loads((out / base / "summary.json").read_text()) for base in ("tiny", "tiny_ocr_rung")}
    assert [e["stage"] for e in summaries["tiny"]["entries"]] == ["base", "structured", "dpo"]
    assert [e["stage"] for e in summaries["tiny_ocr_rung"]["entries"]] == ["base", "general_ocr", "structured", "dpo"]
    with (out / "comparison.csv").open() as handle:
        table = list(csv.DictReader(handle))
    assert [(row["base"], row["stage"]) for row in table] == [
        (base, entry["stage"]) for base, summary in summaries.items() for entry in summary["entries"]]
    for row in table:
        metrics = next(e["metrics"] for e in summaries[row["base"]]["entries"] if e["stage"] == row["stage"])
        assert float(row["quality"]) == pytest.approx(metrics["quality_score"])
        assert float(row["degeneration"]) == pytest.approx(metrics["degeneration_rate"])
        assert float(row["cost_per_million_pages"]) == pytest.approx(metrics["cost_per_million_pages"])
        assert float(row["printed_quality"]) == pytest.approx(metrics["by_family"]["printed"]["quality_score"])
    # Shared pages: generated once, and the same untrained model scores the same on them from both bases.
    assert sorted(p.name for p in out.iterdir() if p.is_dir() and p.name != ".hydra") == ["data", "tiny", "tiny_ocr_rung"]
    assert table[0]["quality"] == table[3]["quality"] and table[0]["cer"] == table[3]["cer"]
    # Every base trains on the pages the ablation resolved once (values handed down, no per-base copy).
    shared = load_pages(out / "data" / "train")
    for base, stage_dir in (("tiny", "tiny/01_structured"), ("tiny_ocr_rung", "tiny_ocr_rung/02_structured")):
        record = run_resolved(json.loads((out / stage_dir / "stage.json").read_text()), out / base)
        assert record["train_pages"] == str(out / "data" / "train")
        assert not (out / base / "data").exists()
        used = load_pages(record["train_pages"])
        assert [(p.id, p.image.resolve()) for p in used.pages] == [(p.id, p.image.resolve()) for p in shared.pages]
    markdown = (out / "comparison.md").read_text()
    assert "| tiny_ocr_rung | general_ocr | sft |" in markdown and "| tiny | dpo | dpo |" in markdown
    assert (out / "comparison_scores.png").is_file() and (out / "comparison_degeneration.png").is_file()

    # Run again unchanged: every stage and every evaluation of every base is reused, nothing written anew.
    manifests = _manifest_times(out)
    again = _cli("recipe=tiny_ablation", f"output_dir={out}", *SHORT, cwd=tmp_path)
    log = again.stdout + again.stderr
    assert again.returncode == 0, log[-3000:]
    assert log.count(": reused, it finished earlier with the same inputs") == 5, log[-3000:]
    assert "runs because" not in log and "evaluating" not in log, log[-3000:]
    assert _manifest_times(out) == manifests and len(manifests) == 2 + 5

    # A base interrupted after its stages finished resumes without re-running any: the general-OCR rung's generated
    # pages resolve to the same shared folder on every run (they once moved into the base's folder on a resume).
    (out / "tiny_ocr_rung" / "summary.json").unlink()
    resumed = _cli("recipe=tiny_ablation", f"output_dir={out}", *SHORT, cwd=tmp_path)
    log = resumed.stdout + resumed.stderr
    assert resumed.returncode == 0, log[-3000:]
    assert "stage general_ocr: reused" in log and "runs because" not in log, log[-3000:]

    # A changed stage setting re-trains that stage and every stage after it, for every base, as in a single run; the
    # stages before it are reused; the comparison reads the new models' points.
    fewer_steps = [word.replace("max_steps=25", "max_steps=20") for word in SHORT]
    changed = _cli("recipe=tiny_ablation", f"output_dir={out}", *fewer_steps, cwd=tmp_path)
    log = changed.stdout + changed.stderr
    assert changed.returncode == 0, log[-3000:]
    assert log.count("stage structured (sft): runs because its config changed "
                     "(optimization.max_steps: 25 -> 20)") == 2, log[-3000:]
    assert log.count("stage dpo (dpo): runs because structured before it re-ran") == 2, log[-3000:]
    assert "stage general_ocr: reused" in log, log[-3000:]
    now = _manifest_times(out)
    rerun = {name for name in now if now[name] != manifests[name]}
    assert rerun == {"tiny/01_structured/manifest.json", "tiny/02_dpo/manifest.json",
                     "tiny_ocr_rung/02_structured/manifest.json", "tiny_ocr_rung/03_dpo/manifest.json"}
    for stage_dir in ("tiny/01_structured", "tiny_ocr_rung/02_structured"):
        manifest = json.loads((out / stage_dir / "manifest.json").read_text())
        assert manifest["inputs"]["config"]["optimization"]["max_steps"] == 20
    summaries = {base: json.loads((out / base / "summary.json").read_text()) for base in ("tiny", "tiny_ocr_rung")}
    with (out / "comparison.csv").open() as handle:
        table = list(csv.DictReader(handle))
    assert [float(row["quality"]) for row in table] == pytest.approx(
        [entry["metrics"]["quality_score"] for summary in summaries.values() for entry in summary["entries"]])


def _manifest_times(out):
    """When each point's manifest of each base was last written: a reused, unevaluated point's is never rewritten."""
    return {str(path.relative_to(out)): path.stat().st_mtime_ns for path in out.glob("*/[0-9][0-9]_*/manifest.json")}


def test_the_ablation_group_yaml_is_the_dataclass_default():
    from pathlib import Path

    from omegaconf import OmegaConf

    from dharma_train.ablation import AblationConfig

    assert OmegaConf.load(Path(config_dir()) / "ablation" / "none.yaml") == OmegaConf.structured(AblationConfig)
