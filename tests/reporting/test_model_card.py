"""The model card of a real (short) run: its numbers are the summary's, its recipe and data are the run's."""

import json
from dataclasses import dataclass
from pathlib import Path

from dharma_train import EvalConfig, ModelArtifact, PageSet, Pipeline, Stage, StageContext, StageResult, TrainerConfig
from dharma_train.reporting.model_card import library_versions, render_card
from dharma_train.stages.export import ExportStage


@dataclass
class SharpenModel(Stage):
    """A real new checkpoint without training: the tiny model's matrices x4. The random-init model repeats one token
    wherever it stands; this one's answers depend on the tokens' positions, which is what the card's snippet must
    get right (Qwen2.5-VL's M-RoPE positions for the image tokens)."""

    name: str
    kind: str = "sharpen"

    def run(self, model: ModelArtifact, pages: PageSet, output_dir: Path, context: StageContext) -> StageResult:
        import torch

        from dharma_train.models.loading import load_model, load_processor

        network = load_model(model)
        with torch.no_grad():
            for weight in network.parameters():
                if weight.dim() == 2:
                    weight.mul_(4.0)
        network.save_pretrained(output_dir / "model")
        load_processor(model.processor_location).save_pretrained(output_dir / "model")
        return StageResult(self.name, ModelArtifact(path=str(output_dir / "model")), {"train_loss": 0.0})


def test_card_of_a_run_carries_its_evaluation_families_recipe_and_versions(tiny_artifact, pages, tmp_path,
                                                                          monkeypatch):
    train, eval_pages = pages
    pipeline = Pipeline(stages=[SharpenModel("sharpen"), ExportStage("export")],
                        evaluation=EvalConfig(max_new_tokens=8, batch_size=4, price_per_hour=3.0),
                        context=StageContext(trainer=TrainerConfig(device="cpu"), run_name="cardtest"))
    monkeypatch.chdir(tmp_path.parent)  # a run-relative output folder, as the CLI gives: the card must not keep it
    summary = pipeline.run(tiny_artifact, train, eval_pages, Path(tmp_path.name))
    # export is recorded, not evaluated again
    assert [e["stage"] for e in summary["entries"]] == ["base", "sharpen"]
    assert summary["not_evaluated"][0]["stage"] == "export"
    assert "`export` (export)" in (tmp_path / "report.md").read_text()

    card = (tmp_path / "02_export" / "model" / "README.md").read_text()
    saved = json.loads((tmp_path / "summary.json").read_text())
    for entry in saved["entries"]:
        metrics = entry["metrics"]
        row = next(line for line in card.splitlines() if line.startswith(f"| {entry['stage']} | {entry['kind']} |"))
        assert f"{metrics['quality_score']:.3f}" in row and f"{metrics['cer']:.3f}" in row
        speed = next(line for line in card.splitlines() if line.startswith(f"| {entry['stage']} | ")
                     and "$" in line)
        assert f"${metrics['cost_per_million_pages']:,.0f}" in speed
        assert f"{metrics['weights_megabytes']:,.1f}" in speed
    assert "$3.00 per hour" in card
    families = {page.family for page in train}
    for family in families:
        count = sum(page.family == family for page in train)
        assert f"- `{family}`: {count} pages" in card
    assert "Made by the pipeline `cardtest`" in card and "evaluated after every stage: sharpen (sharpen)." in card
    assert f"transformers {library_versions()['transformers']}" in card
    assert card.startswith("---\n") and "library_name: transformers" in card
    assert "pipeline_tag: image-text-to-text" in card
    evaluated = {json.loads(line)["id"]: json.loads(line)["output"]
                 for line in (tmp_path / "01_sharpen" / "predictions.jsonl").read_text().splitlines()}
    answers = _run_usage_snippet(card, eval_pages.pages, tmp_path / "elsewhere")
    assert answers == evaluated and len(set(answers.values())) > 1


def _run_usage_snippet(card: str, pages, folder: Path) -> dict[str, str]:
    """The card's Python block, run as a user would in a fresh interpreter, once per page, each from a folder
    outside the run that holds that page as page.png; what it prints, by page id."""
    import ast
    import shutil
    import subprocess
    import sys

    snippet = card.split("```python\n")[1].split("```")[0]
    for page in pages:
        (folder / page.id).mkdir(parents=True)
        shutil.copy(page.image, folder / page.id / "page.png")
    driver = ("import contextlib, io, os, sys\nanswers = {}\nfor page in sys.argv[1:]:\n    os.chdir(page)\n"
              "    printed = io.StringIO()\n    with contextlib.redirect_stdout(printed):\n"
              "        exec(compile(SNIPPET, 'card', 'exec'), {})\n    answers[page] = printed.getvalue()\n"
              "print(repr(answers))\n").replace("SNIPPET", repr(snippet))
    done = subprocess.run([sys.executable, "-c", driver, *(str(folder / page.id) for page in pages)], cwd=folder,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    printed = ast.literal_eval(done.stdout.splitlines()[-1])
    return {Path(page).name: answer.removesuffix("\n") for page, answer in printed.items()}


def test_card_prints_the_real_command_the_sources_and_the_skipped_rows(tmp_path):
    from dharma_train.reporting.model_card import run_provenance

    command = "python -m dharma_train recipe=tiny stages.structured.optimization.max_steps=3"
    (tmp_path / "run.json").write_text(json.dumps({"command": command, "config": {
        "data": {"train": "bench.parquet", "eval": None, "synthetic": {"seed": 4}},
        "stages": {"general_ocr": {"data": "general"}, "structured": {"data": None}}}}))
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "load_report.json").write_text(json.dumps({"sources": [
        {"split": "train", "source": "bench.parquet", "rows": 18, "skipped": 3,
         "skips": {"corrupt_image": 1, "empty_answer": 2}}]}))
    card = render_card(None, [], {"printed": 15}, "tiny", None, "user/model", {"dharma_train": "0.1.0"},
                       provenance=run_provenance(tmp_path))
    assert f"Made by `{command}`" in card and "recipe=tiny`;" not in card
    assert ("Sources: `data.train`: `bench.parquet`; generated synthetic pages for eval (`data.synthetic`, seed 4); "
            "`stages.general_ocr.data`: `general`.") in card
    assert "- `bench.parquet` (train): 18 rows, 3 skipped (corrupt_image 1, empty_answer 2)" in card


def test_card_of_a_quantized_model_says_how_and_what_stayed_16_bit():
    quantization = {"quant_method": "compressed-tensors", "ignore": ["visual.blocks.0.attn.qkv", "re:.*visual\\..*"],
                    "config_groups": {"group_0": {"weights": {"num_bits": 4, "type": "int", "strategy": "group",
                                                              "group_size": 128}}}}
    card = render_card(None, [], {"printed": 3}, "tiny", quantization, "user/model", {"dharma_train": "0.1.0"})
    assert "4-bit int weights (group 128); kept in 16 bits: re:.*visual\\..*" in card
    assert "pip install compressed-tensors" in card and "compressed-tensors" in card.split("---")[1]
    assert 'folder = "user/model"' in card and "from_pretrained(folder" in card
    assert "No evaluation was recorded" in card


def test_card_names_the_kept_and_rejected_stages_and_the_exported_point():
    metrics = {"quality_score": 0.3, "pages": 4, "by_family": {"printed": {"quality_score": 0.3, "pages": 4}}}
    entries = [{"stage": "base", "kind": "base", "model": "/m/base", "metrics": {**metrics, "quality_score": 0.1},
                "gate": {"verdict": "base"}},
               {"stage": "structured", "kind": "sft", "model": "/m/s", "metrics": metrics,
                "gate": {"verdict": "kept", "against": "base", "regressions": []}},
               {"stage": "dpo", "kind": "dpo", "model": "/m/d", "metrics": {**metrics, "quality_score": 0.15},
                "gate": {"verdict": "rejected", "against": "structured",
                         "regressions": ["quality 0.300 -> 0.150 (tolerance 0.010)"]}}]
    summary = {"entries": entries, "evaluation": {"task": "structured"}, "final_point": "structured"}
    card = render_card(summary, [], {"printed": 4}, "tiny", None, "/out/model", {"dharma_train": "0.1.0"})
    assert "| dpo | dpo | rejected |" in card
    assert "Stages kept: structured. Rejected by the stage gate" in card
    assert "dpo (quality 0.300 -> 0.150 (tolerance 0.010))" in card
    assert "These weights are those of `structured`." in card
    assert "Quality of the exported point (structured) per family:" in card


def test_card_of_a_run_whose_last_stage_passed_its_input_on_names_the_stage_that_made_the_weights():
    """An older summary.json called a skipped DPO `kept` and its final point: the card still says skipped, and that
    the weights are structured's."""
    metrics = {"quality_score": 0.3, "pages": 4}
    entries = [{"stage": "base", "kind": "base", "model": "/m/base", "metrics": metrics, "gate": {"verdict": "base"}},
               {"stage": "structured", "kind": "sft", "model": "/m/s", "metrics": metrics,
                "gate": {"verdict": "kept", "against": "base", "regressions": []}},
               {"stage": "dpo", "kind": "dpo", "model": "/m/s", "metrics": metrics, "train": {"skipped": "0 pairs"},
                "gate": {"verdict": "kept", "against": "structured", "regressions": []}}]
    summary = {"entries": entries, "evaluation": {"task": "structured"}, "final_point": "dpo"}
    card = render_card(summary, [], {"printed": 4}, "tiny", None, "/out/model", {"dharma_train": "0.1.0"})
    assert "| dpo | dpo | skipped |" in card and "structured (sft) → dpo (dpo, skipped)" in card
    assert "Stages kept: structured. Skipped (passed its input on untrained, so its row repeats the point before " \
           "it): dpo (0 pairs)." in card
    assert "These weights are those of `structured`." in card and "kept" not in card.split("| dpo |")[1][:10]


def test_a_damaged_stage_record_comes_from_its_manifest_and_a_damaged_summary_is_named(tmp_path, caplog):
    """The export read each stage.json with json.loads: a truncated one was a JSONDecodeError naming no file, after
    the old export was cleared. A stage record is derived (its manifest holds the same facts); a summary the card
    cannot read stops in one line naming it, before the export writes anything."""
    import pytest

    from dharma_train.artifact import ModelArtifact
    from dharma_train.errors import DataError
    from dharma_train.manifest import new_manifest, write_manifest
    from dharma_train.reporting.model_card import run_records

    stage = tmp_path / "02_structured"
    stage.mkdir()
    inputs = {"config": {"task": "structured", "optimization": {"max_steps": 3}}}
    write_manifest(stage, new_manifest("structured", "sft", inputs, ModelArtifact(str(stage / "model")), {}))
    (stage / "stage.json").write_text('{"name": "structured", "kind": "sf')
    (tmp_path / "summary.json").write_text(json.dumps({"entries": []}))
    with caplog.at_level("WARNING", logger="dharma_train.reporting.model_card"):
        records = run_records(tmp_path / "summary.json", tmp_path)
    assert records.stages == [{"name": "structured", "kind": "sft", "config": inputs["config"]}]
    assert "02_structured/stage.json is damaged: the model card takes that stage's name, kind and config from its " \
           "manifest" in caplog.text
    (tmp_path / "summary.json").write_text('{"entries": [')
    with pytest.raises(DataError, match=rf"{tmp_path / 'summary.json'} cannot be read \(not a summary.json object\)"):
        run_records(tmp_path / "summary.json", tmp_path)
    from dharma_train.stages.export import ExportStage

    with pytest.raises(DataError, match="summary.json cannot be read"):  # a given summary: before any work
        ExportStage("export", {"summary": str(tmp_path / "summary.json")}).check()
