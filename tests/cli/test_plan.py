"""The dry run: what would be reused or re-run and why, the pages, the refusals; nothing written."""

import json

from dharma_train.cli.compose import compose_config
from dharma_train.cli.plan import plan
from dharma_train.config import validate
from dharma_train.manifest import stage_inputs
from dharma_train.stage import StageContext
from dharma_train.stages import build_stage


def _finish_first_stage(out, overrides):
    """A manifest as the pipeline writes it for a finished general_ocr stage."""
    config = validate(compose_config([f"output_dir={out}", *overrides]))
    stage = build_stage("general_ocr", config.stages["general_ocr"])
    inputs = stage_inputs(stage, StageContext(trainer=config.trainer, model=config.model), "base-key", "pages-key")
    folder = out / "01_general_ocr"
    folder.mkdir(parents=True)
    (folder / "manifest.json").write_text(json.dumps({"point": "general_ocr", "kind": "sft", "key": "k",
                                                      "inputs": inputs, "artifact": {"path": str(folder)}}))


def test_plan_says_which_stages_are_reused_and_why_others_run(tmp_path):
    out = tmp_path / "run"
    _finish_first_stage(out, [])
    text, problems = plan(compose_config([f"output_dir={out}"]))
    assert problems == []
    assert "[1/5] general_ocr (sft, full): reused" in text
    assert "[2/5] structured (sft, full): runs, it has not finished in this output_dir before" in text
    assert "[3/5] dpo (dpo, full): runs, because structured before it runs" in text
    text, _ = plan(compose_config([f"output_dir={out}", "stages.general_ocr.optimization.learning_rate=0.001"]))
    assert "[1/5] general_ocr (sft, full): runs, because its config changed " \
           "(optimization.learning_rate: 0.003 -> 0.001)" in text
    assert sorted(p.name for p in out.iterdir()) == ["01_general_ocr"], "a plan writes nothing"


def test_plan_names_the_pages_the_model_and_the_memory_floor(tmp_path):
    pages = tmp_path / "pages"
    pages.mkdir()
    (pages / "pages.jsonl").write_text('{"id": "a"}\n{"id": "b"}\n')
    text, problems = plan(compose_config([f"output_dir={tmp_path / 'run'}", f"data.eval={pages}"]))
    assert problems == []
    assert "train: 64 synthetic pages generated (data.synthetic, seed 0)" in text
    assert f"eval: {pages} (format auto, 2 pages; bad rows skipped and reported in data/load_report.json)" in text
    assert "stages.general_ocr: its own 64 generated `general` pages" in text
    assert "model: tiny (built on first use, offline)" in text
    assert "general_ocr: " in text.split("memory floor:")[1] and "every trained stage fits" in text
    assert "# resolved config" in text and "${now" not in text


def test_plan_collects_what_would_stop_the_run(tmp_path):
    text, problems = plan(compose_config([f"output_dir={tmp_path / 'run'}", "trainer.memory_budget_gb=0.001",
                                          "model.path=/no/such/model"]))
    assert any("model folder /no/such/model does not exist" in problem for problem in problems)
    assert "memory floor: not estimated" in text and "would stop: model folder /no/such/model" in text
    text, problems = plan(compose_config([f"output_dir={tmp_path / 'run'}", "trainer.memory_budget_gb=0.001"]))
    assert len(problems) == 1 and "memory budget is 0 GB" in problems[0]
    assert "OVER BUDGET" in text


def test_plan_reuses_a_dpo_stage_finished_on_given_pairs_and_runs_it_for_another_source(tmp_path, pages):
    """A run points its DPO stage at the pairs it loaded (data/stages/dpo/pairs); the plan compares the finished
    stage with that set, as long as it was loaded from the pairs now given."""
    import shutil
    from dataclasses import replace

    from dharma_train.data.pairs import load_pair_set, loop_pairs, save_pairs

    given = save_pairs(loop_pairs(pages[0], "structured", seed=0)[:3], tmp_path / "given")
    out = tmp_path / "run"
    only_dpo = [f"output_dir={out}", "~stages.general_ocr", "~stages.structured", "~stages.quantize",
                "~stages.export"]
    config = validate(compose_config([*only_dpo, f"stages.dpo.pairs={given}"]))
    folder = load_pair_set(given, out / "data" / "stages" / "dpo" / "pairs", split="stages.dpo.pairs")
    stage = build_stage("dpo", replace(config.stages["dpo"], pairs=str(folder)))
    inputs = stage_inputs(stage, StageContext(trainer=config.trainer, model=config.model), "base-key", "pages-key")
    (out / "01_dpo").mkdir()
    (out / "01_dpo" / "manifest.json").write_text(json.dumps({"point": "dpo", "kind": "dpo", "key": "k",
                                                              "inputs": inputs, "artifact": {"path": str(out)}}))
    text, problems = plan(compose_config([*only_dpo, f"stages.dpo.pairs={given}"]))
    assert problems == [] and "[1/1] dpo (dpo, full): reused" in text, text.split("# plan")[1]
    assert "its pages, given pairs and input model are checked again" in text
    other = shutil.copytree(given.parent, tmp_path / "other") / "pairs.jsonl"
    text, _ = plan(compose_config([*only_dpo, f"stages.dpo.pairs={other}"]))
    assert "[1/1] dpo (dpo, full): runs, because its input files changed" in text
