"""run_inputs.resolve_inputs, the one place config becomes pages and pairs: a benchmark parquet given on the command line reaches
the stages, split by image hash, with its load report in the run folder."""

import base64
import io
import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import datasets
import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from PIL import Image

from dharma_train import EvalConfig, ModelArtifact, PageSet, Pipeline, Stage, StageContext, StageResult, TrainerConfig
from dharma_train.config import validate
from dharma_train.config_files import config_dir, register_recipes
from dharma_train.data.pages import load_pages
from dharma_train.errors import DataError
from dharma_train.data.synthetic.generate import generate_pages
from dharma_train.run_inputs import resolve_inputs as resolve


def _benchmark_parquet(path: Path, n: int) -> Path:
    """n good benchmark rows, then one with a corrupt image."""
    rows = []
    for i in range(n + 1):
        buffer = io.BytesIO()
        Image.fromarray(np.random.default_rng(i).integers(0, 255, (64, 48, 3), dtype=np.uint8)).save(buffer, "PNG")
        data = buffer.getvalue() if i < n else b"broken"
        rows.append({"id": i, "image_base64": base64.b64encode(data).decode(),
                     "assistant": json.dumps({"text": f"Página {i}"}), "assistant_without_json": f"Página {i}"})
    datasets.Dataset.from_list(rows).to_parquet(str(path))
    return path


def _config(*overrides):
    register_recipes()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return validate(compose(config_name="config", overrides=list(overrides)))


@dataclass
class RecordPages(Stage):
    """A stage that trains nothing and remembers the pages it was given."""

    name: str
    seen: list = field(default_factory=list)

    def run(self, model: ModelArtifact, pages: PageSet, output_dir: Path, context: StageContext) -> StageResult:
        self.seen = [page.id for page in pages]
        return StageResult(self.name, model, {})


def test_a_benchmark_parquet_on_the_command_line_reaches_the_stage(tmp_path, tiny_artifact):
    source = _benchmark_parquet(tmp_path / "bench.parquet", 8)
    out = tmp_path / "run"
    config = _config(f"output_dir={out}", f"data.train={source}", "data.split.eval=0.25")
    plan = resolve(config)
    train, eval_pages = plan.train, plan.eval_pages
    assert (len(train), len(eval_pages)) == (6, 2)
    report = json.loads((out / "data" / "load_report.json").read_text())
    assert report["sources"][0]["skips"] == {"corrupt_image": 1} and report["splits"] == {"train": 6, "eval": 2}
    assert not (out / "data" / "train").exists(), "nothing generated when every split is given"
    stage = RecordPages("record")
    Pipeline(stages=[stage], evaluation=EvalConfig(max_new_tokens=2, batch_size=2),
             context=StageContext(trainer=TrainerConfig(device="cpu"))).run(tiny_artifact, train, eval_pages, out)
    assert stage.seen == [page.id for page in train]
    assert not set(stage.seen) & {page.id for page in eval_pages}


def test_a_missing_eval_split_is_still_generated(tmp_path):
    source = _benchmark_parquet(tmp_path / "bench.parquet", 3)
    config = _config(f"output_dir={tmp_path / 'run'}", f"data.train={source}", "data.synthetic.eval_pages=2")
    plan = resolve(config)
    train, eval_pages = plan.train, plan.eval_pages
    assert [page.id for page in train] == ["0", "1", "2"] and len(eval_pages) == 2
    assert eval_pages.root == tmp_path / "run" / "data" / "eval"


def test_strict_mode_stops_the_command_with_the_row_before_any_model_loads(tmp_path):
    source = _benchmark_parquet(tmp_path / "bench.parquet", 2)
    result = subprocess.run([sys.executable, "-m", "dharma_train", f"output_dir={tmp_path / 'run'}",
                             f"data.train={source}", "data.strict=true"], cwd=tmp_path, capture_output=True,
                            text=True, timeout=600, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    output = result.stdout + result.stderr
    assert result.returncode == 2, output[-2000:]
    assert f"{source} row 2 (id 2): corrupt_image: not a readable image" in output
    assert "Traceback" not in output and not (tmp_path / "run" / "00_base").exists()


# Generated splits, and stages whose `data` names a generated set.

def _generated_config(tmp_path, *overrides):
    register_recipes()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        composed = compose(config_name="config", overrides=[
            f"output_dir={tmp_path}", "data.synthetic.train_pages=3", "data.synthetic.eval_pages=2",
            "data.synthetic.general_pages=4", *overrides])
    return validate(composed)


def test_a_stage_naming_general_trains_on_generated_mixed_language_pages(tmp_path):
    config = _generated_config(tmp_path)
    plan = resolve(config)
    train, evaluation = plan.train, plan.eval_pages
    assert (len(train), len(evaluation)) == (3, 2)
    general_dir = tmp_path / "data" / "general"
    assert plan.stage_pages["general_ocr"].root == general_dir
    assert config.stages["general_ocr"].data == "general", "the validated config is never changed"
    general = load_pages(general_dir)
    assert len(general) == 4
    assert {(page.family, page.task) for page in general} == {("general", "general")}
    assert all(page.answer.text.startswith("# ") for page in general)
    markers = ("#", "##", "-")
    assert all(len([w for w in page.answer.text.split() if w not in markers]) <= 20 for page in general)
    assert "structured" not in plan.stage_pages, "stages without data keep the run's training pages"


def test_generated_pages_are_found_again_by_a_resumed_run_and_drawn_again_when_a_setting_changes(tmp_path):
    """A resumed run does not draw its generated sets again (generation.json records how they were drawn); another
    setting draws them anew."""
    config = _generated_config(tmp_path)
    first = resolve(config)
    files = [tmp_path / "data" / name / "pages.jsonl" for name in ("train", "eval", "general")]
    written = [path.stat().st_mtime_ns for path in files]
    again = resolve(config)
    assert [path.stat().st_mtime_ns for path in files] == written
    assert [page.id for page in again.stage_pages["general_ocr"]] == [page.id for page in first.stage_pages["general_ocr"]]
    more = resolve(_generated_config(tmp_path, "data.synthetic.general_pages=5"))
    assert len(more.stage_pages["general_ocr"]) == 5 and [path.stat().st_mtime_ns for path in files[:2]] == written[:2]


def test_a_stage_folder_goes_through_the_run_loader_and_nothing_else_is_generated(tmp_path):
    own = generate_pages(tmp_path / "own", 2, seed=0, task="plain")
    config = _generated_config(tmp_path / "run", f"stages.general_ocr.data={own.root}")
    checked = tmp_path / "run" / "data" / "stages" / "general_ocr"
    assert resolve(config).stage_pages["general_ocr"].root == checked
    assert [page.id for page in load_pages(checked)] == [page.id for page in own]
    report = json.loads((checked / "load_report.json").read_text())["sources"][0]
    assert (report["split"], report["used"], report["skipped"]) == ("stages.general_ocr", 2, 0)
    assert not (tmp_path / "run" / "data" / "general").exists()


def test_a_stage_source_with_a_bad_row_is_skipped_and_reported_or_strict_stops(tmp_path):
    source = _benchmark_parquet(tmp_path / "bench.parquet", 2)
    config = _generated_config(tmp_path / "run", f"stages.structured.data={source}")
    stage_folder = resolve(config).stage_pages["structured"].root
    assert len(load_pages(stage_folder)) == 2
    report = json.loads((Path(stage_folder) / "load_report.json").read_text())["sources"][0]
    assert report["skips"] == {"corrupt_image": 1}
    assert report["skipped_rows"] == [{"row": f"{source} row 2", "id": "2", "reason": "corrupt_image"}]
    strict = _generated_config(tmp_path / "strict", f"stages.structured.data={source}", "data.strict=true")
    with pytest.raises(DataError, match=r"row 2 \(id 2\): corrupt_image: not a readable image"):
        resolve(strict)


def test_synthetic_options_reach_the_generated_splits(tmp_path):
    config = _generated_config(tmp_path, "data.synthetic.families=[legal]", "data.synthetic.max_words=8",
                     "stages.general_ocr.data=null")
    plan = resolve(config)
    train, evaluation = plan.train, plan.eval_pages
    assert {page.family for page in [*train, *evaluation]} == {"legal"}
    assert all(len(page.answer.text.split()) <= 8 for page in train)


# Given preference pairs: loaded once, at the run's pixel budget, and the DPO stage trains on that set.

@pytest.mark.slow
def test_given_pairs_are_prepared_once_and_the_dpo_stage_trains_on_the_runs_resized_images(tmp_path, tiny_artifact,
                                                                                          pages):
    from dataclasses import replace

    from dharma_train.data.pairs import load_pairs, loop_pairs, save_pairs
    from dharma_train.run_paths import run_resolved
    from dharma_train.stages import build_stage
    from dharma_train.training.config import OptimizationConfig

    given = save_pairs(loop_pairs(pages[0], "structured", seed=0)[:4], tmp_path / "given")
    originals = {pair.id: Image.open(pair.image).size for pair in load_pairs(given)}
    budget = 20_000  # the synthetic pages are 224 x 308: every image is scaled down once, by the run's loader
    assert all(width * height > budget for width, height in originals.values())
    run = tmp_path / "run"
    config = _generated_config(run, f"stages.dpo.pairs={given}", f"data.max_pixels={budget}")
    plan = resolve(config)
    loaded = run / "data" / "stages" / "dpo" / "pairs"
    assert plan.stage_pairs["dpo"].root == loaded, "the stage is handed the pairs the run checked"
    assert config.stages["dpo"].pairs == str(given), "the validated config is never changed"

    stage = build_stage("dpo", replace(config.stages["dpo"], optimization=OptimizationConfig(
        method="lora", max_steps=1, batch_size=2, learning_rate=1e-3)), plan.stage_pairs["dpo"])
    out = run / "04_dpo"
    result = stage.run(tiny_artifact, plan.train, out, StageContext(trainer=TrainerConfig(device="cpu",
                                                                                         precision="fp32")))
    assert result.metrics["pairs"] == 4
    assert not (out / "pair_images").exists(), "the stage prepares no second copy of the images"
    summary = run_resolved(json.loads((out / "pairs_summary.json").read_text()), run)
    assert (summary["source"], summary["folder"], summary["pairs"]) == (str(given), str(loaded), 4)
    trained = load_pairs(summary["folder"])
    assert all(pair.image.parent == loaded / "images" for pair in trained)
    assert all(Image.open(pair.image).size[0] * Image.open(pair.image).size[1] <= budget for pair in trained)
    record = json.loads((out / "stage.json").read_text())
    assert record["config"]["pairs"] == str(given), "stage.json keeps the source the user gave"


def test_a_run_that_cannot_start_stops_before_any_page_is_generated(tmp_path):
    """Cheap checks first (issue 28): a stage's own check (here a given pairs file that is not there) stops the run
    before the pages are generated or the tiny model is built; before, the pages came first."""
    from dharma_train.run import execute

    out = tmp_path / "run"
    config = _generated_config(out, f"stages.dpo.pairs={tmp_path / 'no_pairs.jsonl'}")
    with pytest.raises(DataError, match="no_pairs.jsonl"):
        execute(config)
    assert not (out / "data").exists() and not (out / "00_base").exists()
