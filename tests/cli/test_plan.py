"""The dry run: what would be reused or re-run and why, the pages, the refusals; nothing written."""

import json

from dharma_train.cli.compose import compose_config
from dharma_train.cli.plan import plan
from dharma_train.config import validate
from dharma_train.artifact import ModelArtifact, base_artifact
from dharma_train.manifest import base_inputs, key, stage_inputs, written_files
from dharma_train.stage import StageContext
from dharma_train.stages import build_stage


def base_key(model_path: str) -> str:
    """The key of a run's base point, which its first stage records as its input."""
    return key(base_inputs(base_artifact(model_path)))


def finish_stage(config, out, index: int, name: str, upstream: str) -> str:
    """A manifest as the pipeline writes it for a finished stage (pages not fingerprinted); returns its key."""
    stage = build_stage(name, config.stages[name])
    inputs = stage_inputs(stage, StageContext(trainer=config.trainer, model=config.model), upstream, "pages-key")
    folder = out / f"{index:02d}_{name}"
    folder.mkdir(parents=True)
    (folder / "manifest.json").write_text(json.dumps({"point": name, "kind": stage.kind, "key": key(inputs),
                                                      "inputs": inputs, "artifact": {"path": str(folder)},
                                                      "train": {}}))
    return key(inputs)


def _finish_first_stage(out, overrides, upstream: str | None = None):
    """A finished general_ocr stage, started from the tiny base unless `upstream` names another point."""
    config = validate(compose_config(["recipe=tiny_random", f"output_dir={out}", *overrides]))
    finish_stage(config, out, 1, "general_ocr", upstream or base_key(config.model.path))


def test_plan_says_which_stages_are_reused_and_why_others_run(tmp_path):
    out = tmp_path / "run"
    _finish_first_stage(out, [])
    text, problems = plan(compose_config(["recipe=tiny_random", f"output_dir={out}"]))
    assert problems == []
    assert "[1/5] general_ocr (sft, full): reused" in text
    assert "[2/5] structured (sft, full): runs, it has not finished in this output_dir before" in text
    assert "[3/5] dpo (dpo, full): runs, because structured before it runs" in text
    text, _ = plan(compose_config(["recipe=tiny_random", f"output_dir={out}",
                                   "stages.general_ocr.optimization.learning_rate=0.001"]))
    assert "[1/5] general_ocr (sft, full): runs, because its config changed " \
           "(optimization.learning_rate: 0.003 -> 0.001)" in text
    assert sorted(p.name for p in out.iterdir()) == ["01_general_ocr"], "a plan writes nothing"


def test_plan_runs_a_stage_that_started_from_another_model_or_whose_files_changed(tmp_path):
    """The same chain as the run's keys: a first stage trained from another base model is not reused, nor is one
    whose saved files are no longer those it wrote."""
    out = tmp_path / "run"
    _finish_first_stage(out, [], upstream="another-base-key")
    text, _ = plan(compose_config(["recipe=tiny_random", f"output_dir={out}"]))
    assert "[1/5] general_ocr (sft, full): runs, because the base model changed since it ran" in text
    manifest = json.loads((out / "01_general_ocr" / "manifest.json").read_text())
    weights = out / "01_general_ocr" / "model" / "model.safetensors"
    weights.parent.mkdir()
    weights.write_bytes(b"w" * 100)
    manifest["inputs"]["input"] = base_key("tiny")
    manifest["outputs"] = written_files(ModelArtifact(path=str(weights.parent)))
    (out / "01_general_ocr" / "manifest.json").write_text(json.dumps(manifest))
    text, _ = plan(compose_config(["recipe=tiny_random", f"output_dir={out}"]))
    assert "[1/5] general_ocr (sft, full): reused" in text
    weights.write_bytes(b"w" * 10)
    text, _ = plan(compose_config(["recipe=tiny_random", f"output_dir={out}"]))
    assert "[1/5] general_ocr (sft, full): runs, because 01_general_ocr/model/model.safetensors changed since it " \
           "was written (100 bytes, now 10)" in text


def test_plan_reuses_a_stage_that_started_from_an_earlier_point_than_the_one_before_it(tmp_path):
    """The gate (keep_best) starts the next stage from the best point so far when a stage is rejected."""
    out = tmp_path / "run"
    config = validate(compose_config(["recipe=tiny_random", f"output_dir={out}"]))
    finish_stage(config, out, 1, "general_ocr", base_key("tiny"))
    finish_stage(config, out, 2, "structured", base_key("tiny"))  # general_ocr was rejected
    text, _ = plan(compose_config(["recipe=tiny_random", f"output_dir={out}"]))
    assert "[2/5] structured (sft, full): reused" in text, text.split("# plan")[1]


def test_plan_names_the_pages_the_model_and_the_memory_floor(tmp_path):
    pages = tmp_path / "pages"
    pages.mkdir()
    (pages / "pages.jsonl").write_text('{"id": "a"}\n{"id": "b"}\n')
    text, problems = plan(compose_config(["recipe=tiny_random", f"output_dir={tmp_path / 'run'}",
                                          f"data.eval={pages}"]))
    assert problems == []
    assert "train: 64 synthetic pages generated (data.synthetic, seed 0)" in text
    assert f"eval: {pages} (format auto, 2 pages; bad rows skipped and reported in data/load_report.json)" in text
    assert "stages.general_ocr: its own 64 generated `general` pages" in text
    assert "model: tiny (built on first use, offline)" in text
    assert "general_ocr: " in text.split("memory floor:")[1] and "every trained stage fits" in text
    assert "# resolved config" in text and "${now" not in text


def test_plan_collects_what_would_stop_the_run(tmp_path):
    text, problems = plan(compose_config(["recipe=tiny_random", f"output_dir={tmp_path / 'run'}",
                                          "trainer.memory_budget_gb=0.001",
                                          "model.path=/no/such/model"]))
    assert any("model folder /no/such/model does not exist" in problem for problem in problems)
    assert "memory floor: not estimated" in text and "would stop: model folder /no/such/model" in text
    text, problems = plan(compose_config(["recipe=tiny_random", f"output_dir={tmp_path / 'run'}",
                                          "trainer.memory_budget_gb=0.001"]))
    assert len(problems) == 1 and "memory budget is 0 GB" in problems[0]
    assert "OVER BUDGET" in text


def test_plan_reuses_a_dpo_stage_finished_on_given_pairs_and_runs_it_for_another_source(tmp_path, pages):
    """A run hands its DPO stage the pairs it loaded (data/stages/dpo/pairs); the plan compares the finished
    stage with that set, as long as it was loaded from the pairs now given."""
    import shutil

    from dharma_train.data.pairs import load_pair_set, loop_pairs, save_pairs

    given = save_pairs(loop_pairs(pages[0], "structured", seed=0)[:3], tmp_path / "given")
    out = tmp_path / "run"
    only_dpo = [f"output_dir={out}", "~stages.general_ocr", "~stages.structured", "~stages.quantize",
                "~stages.export"]
    config = validate(compose_config(["recipe=tiny_random", *only_dpo, f"stages.dpo.pairs={given}"]))
    pair_set = load_pair_set(given, out / "data" / "stages" / "dpo" / "pairs", split="stages.dpo.pairs")
    stage = build_stage("dpo", config.stages["dpo"], pair_set)
    inputs = stage_inputs(stage, StageContext(trainer=config.trainer, model=config.model), base_key("tiny"),
                          "pages-key")
    (out / "01_dpo").mkdir()
    (out / "01_dpo" / "manifest.json").write_text(json.dumps({"point": "dpo", "kind": "dpo", "key": "k",
                                                              "inputs": inputs, "artifact": {"path": str(out)},
                                                              "train": {}}))
    text, problems = plan(compose_config(["recipe=tiny_random", *only_dpo, f"stages.dpo.pairs={given}"]))
    assert problems == [] and "[1/1] dpo (dpo, full): reused" in text, text.split("# plan")[1]
    assert "its pages and given pairs are checked again" in text
    other = shutil.copytree(given.parent, tmp_path / "other") / "pairs.jsonl"
    text, _ = plan(compose_config(["recipe=tiny_random", *only_dpo, f"stages.dpo.pairs={other}"]))
    assert "[1/1] dpo (dpo, full): runs, because its input files changed" in text


# ---- ablations: every base in its own folder ----------------------------------------------------------------------

def _ablation(out, *overrides):
    return compose_config(["recipe=tiny_ablation", f"output_dir={out}", *overrides])


def _finish_base(out, name: str, stages: list[str], *overrides) -> None:
    """A base's first stages finished, in its own folder, chained from its base model as the run chains them."""
    from dharma_train.run_ablation import base_config

    run = base_config(validate(_ablation(out, *overrides)), name, "train", "eval")
    upstream = base_key(run.model.path)
    for index, stage in enumerate(stages, start=1):
        upstream = finish_stage(run, out / name, index, stage, upstream)


def _stage_lines(text: str, base: str) -> list[str]:
    """The stage lines of one base's block, up to the colon."""
    block = text.split(f" {base}: ")[1].split("\nbase ")[0]
    return [line.strip().split(":")[0] for line in block.splitlines() if line.startswith("    [")]


def test_plan_shows_each_base_its_stages_the_skipped_ones_and_what_it_would_reuse(tmp_path):
    out = tmp_path / "ablation"
    _finish_base(out, "tiny", ["structured", "dpo"])
    _finish_base(out, "tiny_ocr_rung", ["general_ocr"])
    text, problems = plan(_ablation(out))
    assert problems == [], problems
    assert f"base 1/2 tiny: tiny in {out / 'tiny'}; skips general_ocr, quantize, export " \
           "(ablation.bases.tiny.skip)" in text
    assert _stage_lines(text, "tiny") == ["[-] general_ocr", "[1/2] structured (sft, full)", "[2/2] dpo (dpo, full)",
                                          "[-] quantize", "[-] export"]
    assert "    [-] general_ocr: skipped by this base (ablation.bases.tiny.skip)" in text
    assert "    [1/2] structured (sft, full): reused" in text and "    [2/2] dpo (dpo, full): reused" in text
    assert _stage_lines(text, "tiny_ocr_rung") == ["[1/3] general_ocr (sft, full)", "[2/3] structured (sft, full)",
                                                   "[3/3] dpo (dpo, full)", "[-] quantize", "[-] export"]
    assert "    [1/3] general_ocr (sft, full): reused" in text
    assert "    [2/3] structured (sft, full): runs, it has not finished in this output_dir before" in text

    text, _ = plan(_ablation(out, "stages.structured.optimization.max_steps=7"))
    assert "    [1/2] structured (sft, full): runs, because its config changed " \
           "(optimization.max_steps: 200 -> 7)" in text
    assert "    [2/2] dpo (dpo, full): runs, because structured before it runs" in text
    assert "    [1/3] general_ocr (sft, full): reused" in text


def test_plan_runs_every_stage_of_a_base_whose_model_changed(tmp_path):
    import shutil

    from dharma_train.models.tiny import tiny_model_dir

    out = tmp_path / "ablation"
    _finish_base(out, "tiny", ["structured", "dpo"])
    _finish_base(out, "tiny_ocr_rung", ["general_ocr"])
    other = shutil.copytree(tiny_model_dir(), tmp_path / "other_model")
    (other / "notes.txt").write_text("another model")
    text, problems = plan(_ablation(out, f"ablation.bases.tiny.path={other}"))
    assert problems == [], problems
    assert "    [1/2] structured (sft, full): runs, because the base model changed since it ran" in text
    assert "    [1/3] general_ocr (sft, full): reused" in text


def test_plan_names_every_unreachable_base_with_the_key_to_set(tmp_path, monkeypatch):
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    text, problems = plan(_ablation(tmp_path / "ablation", f"ablation.bases.tiny.path={tmp_path / 'missing'}",
                                    "ablation.bases.tiny_ocr_rung.path=nobody/no-such-model"))
    assert problems == [f"ablation.bases.tiny.path: model folder {tmp_path / 'missing'} does not exist",
                        "ablation.bases.tiny_ocr_rung.path: model nobody/no-such-model is not in the Hugging Face "
                        + problems[1].split("is not in the Hugging Face ")[1]]
    assert "point ablation.bases.tiny_ocr_rung.path at a local folder" in problems[1]
    assert "model.path at" not in text
    assert text.count("  model: REFUSED: ablation.bases.") == 2 and text.count("would stop: ablation.bases.") == 2
    assert text.count("memory floor: not estimated") == 2


def test_plan_runs_the_stages_own_checks_as_the_run_does(tmp_path):
    """A given pairs file that is not there stops the run at its start; plan says so instead of 'ready'."""
    text, problems = plan(compose_config(["recipe=tiny", f"output_dir={tmp_path / 'run'}",
                                          f"stages.dpo.pairs={tmp_path / 'no_pairs.jsonl'}"]))
    assert problems and "no_pairs.jsonl" in problems[0]
    assert "stage checks: REFUSED" in text and "ready:" not in text
