"""Stage manifests: what counts as finished, what counts as changed, and what an interrupted attempt may keep."""

import json
from pathlib import Path

from dharma_train.artifact import ModelArtifact
from dharma_train.data.synthetic.generate import generate_pages
from dharma_train.manifest import (
    MANIFEST,
    begin_attempt,
    describe_changes,
    is_fresh,
    new_manifest,
    pages_fingerprint,
    path_fingerprint,
    read_manifest,
    stage_inputs,
    write_manifest,
)
from dharma_train.stage import StageContext
from dharma_train.stages import SFTStage, SFTStageConfig
from dharma_train.training.config import OptimizationConfig, TrainerConfig


def _inputs(learning_rate=1e-3, seed=0, workers=0, upstream="abc", pages="p1", **trainer):
    stage = SFTStage("structured", SFTStageConfig(optimization=OptimizationConfig(learning_rate=learning_rate)))
    context = StageContext(trainer=TrainerConfig(device="cpu", seed=seed, dataloader_workers=workers, **trainer))
    return stage_inputs(stage, context, upstream, pages)


def test_a_manifest_written_for_the_inputs_is_fresh_and_survives_a_round_trip(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    write_manifest(tmp_path, new_manifest("structured", "sft", _inputs(), ModelArtifact(str(model)), {"loss": 1}))
    manifest = read_manifest(tmp_path)
    assert is_fresh(manifest, _inputs()) == (True, "it finished earlier with the same inputs")
    assert manifest["versions"]["torch"] and manifest["versions"]["dharma_train"]


def test_each_kind_of_change_is_named():
    before = _inputs()
    assert describe_changes(before, _inputs(learning_rate=2e-3)) == \
        "its config changed (optimization.learning_rate: 0.001 -> 0.002)"
    assert describe_changes(before, _inputs(seed=1)) == "trainer settings changed (seed: 0 -> 1)"
    assert describe_changes(before, _inputs(upstream="def")) == "its input model changed"
    assert describe_changes(before, _inputs(pages="p2")) == "its training pages changed"
    fresh, reason = is_fresh({"inputs": before, "artifact": {"path": "/x"}, "key": "k"}, _inputs(seed=3))
    assert not fresh and reason == "trainer settings changed (seed: 0 -> 3)"


def test_speed_and_memory_settings_are_not_inputs():
    """Turning on checkpointing or more workers after an out-of-memory error must not re-train finished stages."""
    assert _inputs() == _inputs(workers=4, gradient_checkpointing=True, checkpoint_every=7, keep_checkpoints=5,
                                resume="never", memory_budget_gb=12.0, logging_steps=3)


def test_the_out_of_memory_advice_keeps_finished_stages_and_the_token_budget_does_not():
    """The out-of-memory message's first suggestion (recompute=all) and every other trainer.performance or
    trainer.hardware setting that changes only speed or memory leave the key alone; the token budget changes the
    batches and lora_4bit the frozen base, so those are inputs."""
    from dharma_train.manifest import describe_changes
    from dharma_train.training.hardware import HardwareConfig
    from dharma_train.training.performance.config import PerformanceConfig

    speed_only = PerformanceConfig(recompute="all", compile="off", padding_free=False, fused_kernels=False,
                                   fused_optimizer=False, prefetch_batches=8)
    assert _inputs() == _inputs(performance=speed_only, hardware=HardwareConfig(strategy="ddp"), lock_wait_seconds=5)
    assert describe_changes(_inputs(), _inputs(performance=PerformanceConfig(token_budget="4096"))) == \
        "trainer settings changed (performance.token_budget: auto -> 4096)"
    assert _inputs() != _inputs(performance=PerformanceConfig(lora_4bit=True))


def test_master_weights_in_the_optimizer_are_an_input_only_where_they_apply():
    """bf16 parameters change what a stage computes; on a CPU (fp32) the setting changes nothing, so the key stays."""
    from dharma_train.manifest import describe_changes
    from dharma_train.training.performance.config import PerformanceConfig

    def inputs(**trainer):
        stage = SFTStage("structured", SFTStageConfig())
        return stage_inputs(stage, StageContext(trainer=TrainerConfig(**trainer)), "abc", "p1")

    optimizer = PerformanceConfig(master_weights="optimizer")
    assert inputs(device="cpu", performance=optimizer) == inputs(device="cpu")
    assert describe_changes(inputs(precision="bf16"), inputs(precision="bf16", performance=optimizer)) == \
        "trainer settings changed (performance.master_weights: (none) -> optimizer)"


def test_missing_unreadable_or_truncated_manifests_mean_not_finished(tmp_path):
    assert read_manifest(tmp_path) is None
    assert is_fresh(None, _inputs()) == (False, "it has not finished in this output_dir before")
    model = tmp_path / "model"
    model.mkdir()
    write_manifest(tmp_path, new_manifest("s", "sft", _inputs(), ModelArtifact(str(model)), {}))
    text = (tmp_path / MANIFEST).read_text()
    (tmp_path / MANIFEST).write_text(text[: len(text) // 2])  # a write cut short (what atomic writes prevent)
    assert read_manifest(tmp_path) is None
    (tmp_path / MANIFEST).write_text(json.dumps({"point": "s"}))
    assert read_manifest(tmp_path) is None


def test_a_manifest_whose_model_is_gone_is_stale(tmp_path):
    manifest = new_manifest("s", "sft", _inputs(), ModelArtifact(str(tmp_path / "gone")), {})
    assert is_fresh(manifest, _inputs()) == (False, f"its saved model {tmp_path / 'gone'} is missing")


def test_an_attempt_keeps_its_work_only_for_the_same_inputs(tmp_path):
    stage = tmp_path / "02_structured"
    assert begin_attempt(stage, _inputs(), resume=True) is False  # nothing to resume: a fresh folder
    (stage / "trainer" / "checkpoint-2").mkdir(parents=True)
    assert begin_attempt(stage, _inputs(), resume=True) is True
    assert (stage / "trainer" / "checkpoint-2").is_dir()
    write_manifest(stage, {"finished": True})  # it ran to the end: run again (damaged outputs), it starts clean
    assert begin_attempt(stage, _inputs(), resume=True) is False
    assert not (stage / "trainer").exists() and not (stage / MANIFEST).exists()
    (stage / "trainer" / "checkpoint-2").mkdir(parents=True)
    assert begin_attempt(stage, _inputs(learning_rate=5e-3), resume=True) is False
    assert not (stage / "trainer").exists(), "checkpoints of other inputs must never be resumed"
    (stage / "trainer").mkdir()
    assert begin_attempt(stage, _inputs(learning_rate=5e-3), resume=False) is False
    assert not (stage / "trainer").exists()


def test_regenerated_synthetic_pages_have_the_same_fingerprint_and_an_edit_changes_it(tmp_path):
    first = generate_pages(tmp_path / "a", n=3, seed=5)
    again = generate_pages(tmp_path / "a", n=3, seed=5)
    assert pages_fingerprint(first) == pages_fingerprint(again)
    other_seed = generate_pages(tmp_path / "b", n=3, seed=6)
    assert pages_fingerprint(other_seed) != pages_fingerprint(first)
    pages_before, folder_before = pages_fingerprint(first), path_fingerprint(tmp_path / "a")
    image = first.pages[0].image
    image.write_bytes(image.read_bytes() + b"\0")
    assert pages_fingerprint(first) != pages_before
    assert path_fingerprint(tmp_path / "a") != folder_before


def _finished_stage(tmp_path):
    """A stage folder as the pipeline leaves it: its model written, then its manifest with what it wrote."""
    from dharma_train.manifest import stage_manifest

    folder = tmp_path / "02_structured"
    begin_attempt(folder, _inputs(), resume=True)
    model = folder / "model"
    model.mkdir()
    (model / "model.safetensors").write_bytes(b"w" * 10_000)
    (model / "config.json").write_text("{}")
    manifest = stage_manifest(folder, "structured", "sft", _inputs(), ModelArtifact(str(model)), {})
    return write_manifest(folder, manifest), model


def test_written_files_are_verified_before_reuse(tmp_path):
    manifest, model = _finished_stage(tmp_path)
    assert set(manifest["outputs"]["files"]) == {"model.safetensors", "config.json"}
    assert is_fresh(read_manifest(model.parent), _inputs())[0]
    weights = model / "model.safetensors"
    weights.write_bytes(b"w" * 5_000)  # truncated
    assert is_fresh(manifest, _inputs()) == (
        False, "02_structured/model/model.safetensors changed since it was written (10000 bytes, now 5000)")
    weights.write_bytes(b"v" + b"w" * 9_999)  # same size, one byte flipped
    assert is_fresh(manifest, _inputs()) == (
        False, "02_structured/model/model.safetensors changed since it was written (same size, other content)")
    weights.unlink()
    assert is_fresh(manifest, _inputs()) == (
        False, "02_structured/model/model.safetensors is missing since it was written")
    weights.write_bytes(b"w" * 10_000)
    (model / "model-00002.safetensors").write_bytes(b"x")
    assert is_fresh(manifest, _inputs()) == (
        False, "02_structured/model/model-00002.safetensors appeared in 02_structured/model since it was written")


def test_a_stage_records_its_machine_and_a_different_one_is_named(tmp_path):
    from dharma_train.manifest import ATTEMPT, machine_note
    from dharma_train.reporting.run_record import stage_machine

    manifest, model = _finished_stage(tmp_path)
    here = stage_machine("cpu")
    assert manifest["made_on"] == [here] and here["torch_threads"] >= 1 and here["packages"]["torch"]
    assert machine_note("structured", manifest, "cpu") is None
    other = {**here, "torch_threads": here["torch_threads"] + 1, "host": "elsewhere"}
    manifest["made_on"] = [other]
    assert machine_note("structured", manifest, "cpu") == (
        f"stage structured was made on another machine than this run's (torch_threads: {here['torch_threads'] + 1} "
        f"-> {here['torch_threads']}); reused as it is, not re-run (trainer.resume=never re-runs it here)")
    # interrupted on another machine, resumed here: the attempt keeps both, the manifest says the weights mix them
    folder = model.parent
    (folder / MANIFEST).unlink()
    (folder / ATTEMPT).write_text(json.dumps({**json.loads((folder / ATTEMPT).read_text()), "made_on": [other]}))
    assert begin_attempt(folder, _inputs(), resume=True) is True
    assert json.loads((folder / ATTEMPT).read_text())["made_on"] == [other, here]
    from dharma_train.manifest import stage_manifest

    resumed = stage_manifest(folder, "structured", "sft", _inputs(), ModelArtifact(str(model)), {})
    assert machine_note("structured", resumed, "cpu") == (
        f"stage structured was resumed on another machine (torch_threads: {here['torch_threads'] + 1} -> "
        f"{here['torch_threads']}): its weights mix both")


def test_model_paths_inside_the_run_are_stored_relative_to_it_and_follow_a_moved_run(tmp_path):
    import shutil

    run = tmp_path / "run1"
    (run / "01_sft" / "model").mkdir(parents=True)
    inside = ModelArtifact(str(run / "01_sft" / "model"), base=ModelArtifact("org/base-model"))
    manifest = new_manifest("sft", "sft", _inputs(), inside, {})
    manifest["evaluation"] = {"key": "k", "entry": {"stage": "sft", "model": inside.path,
                                                    "artifact": inside.to_dict()}}
    write_manifest(run / "01_sft", manifest)
    stored = json.loads((run / "01_sft" / MANIFEST).read_text())
    assert stored["artifact"]["path"] == "run:01_sft/model" and stored["artifact"]["base"]["path"] == "org/base-model"
    assert str(tmp_path) not in json.dumps(stored), "nothing in the manifest names where the run folder lies"
    shutil.move(run, tmp_path / "run1b")
    moved = read_manifest(tmp_path / "run1b" / "01_sft")
    assert moved["artifact"]["path"] == str(tmp_path / "run1b" / "01_sft" / "model")
    assert moved["evaluation"]["entry"]["model"] == moved["artifact"]["path"]
    assert is_fresh(moved, _inputs()) == (True, "it finished earlier with the same inputs")


def test_a_stage_data_folder_enters_the_key_by_content_not_by_location(tmp_path):
    def inputs(folder):
        stage = SFTStage("general", SFTStageConfig(data=str(folder)))
        return stage_inputs(stage, StageContext(trainer=TrainerConfig(device="cpu")), "up", "same-pages")

    assert inputs(tmp_path / "run1" / "data" / "general") == inputs(tmp_path / "run1b" / "data" / "general")


def _given_pairs(folder, pages, n=3):
    """A given pairs.jsonl whose images are its own copies of page images (so a test may edit one in place)."""
    import shutil

    from dharma_train.data.pairs import PreferencePair, loop_pairs, save_pairs

    folder.mkdir(parents=True)
    pairs = []
    for index, pair in enumerate(loop_pairs(pages, "structured", seed=0)[:n]):
        image = shutil.copy(pair.image, folder / f"page{index}.png")
        pairs.append(PreferencePair(pair.id, Path(image), pair.chosen, pair.rejected, pair.reason, pair.source))
    return save_pairs(pairs, folder)


def test_a_runs_given_pairs_enter_the_key_by_content_not_by_location(tmp_path, pages):
    """The DPO stage trains on the pair set the run loaded (data/stages/NAME/pairs): its key follows that set's
    pairs and image bytes, so a moved run keeps the stage and an edited pair, an edited image or another pixel
    budget re-runs it."""
    import shutil

    from PIL import Image

    from dharma_train.data.pairs import PairSet, load_pair_set
    from dharma_train.stages import DPOStage, DPOStageConfig

    def inputs(pair_set, source=None):
        stage = DPOStage("dpo", DPOStageConfig(pairs=str(source or given)), pair_set)
        return stage_inputs(stage, StageContext(trainer=TrainerConfig(device="cpu")), "up", "same-pages")

    def loaded(run, **settings):
        return load_pair_set(given, run / "data" / "stages" / "dpo" / "pairs", split="stages.dpo.pairs", **settings)

    given = _given_pairs(tmp_path / "given", pages[0])
    before = inputs(loaded(tmp_path / "run1"))
    assert str(tmp_path) not in json.dumps(before["config"]), "the config names no folder"
    shutil.move(tmp_path / "run1", tmp_path / "run1b")
    assert inputs(PairSet(tmp_path / "run1b" / "data" / "stages" / "dpo" / "pairs")) == before
    assert inputs(PairSet(tmp_path / "run1b" / "data" / "stages" / "dpo" / "pairs"), "/moved/pairs.jsonl") == before, \
        "a moved source with the same pairs: the same key"
    assert inputs(loaded(tmp_path / "again")) == before, "the same file loaded again: the same key"
    assert describe_changes(before, inputs(loaded(tmp_path / "small", max_pixels=20_000))) == \
        "its input files changed", "another data.max_pixels: other images"
    rows = [json.loads(line) for line in given.read_text().splitlines()]
    rows[0]["chosen"] += " edited"
    given.write_text("".join(json.dumps(row) + "\n" for row in rows))
    edited = inputs(loaded(tmp_path / "edited"))
    assert edited["files"] != before["files"]
    Image.new("RGB", (224, 308), "white").save(tmp_path / "given" / "page1.png")  # used where it lies, not copied
    assert inputs(loaded(tmp_path / "image"))["files"] != edited["files"]


def test_a_damaged_or_misshapen_manifest_is_named_and_its_stage_made_again(tmp_path):
    """A manifest of the wrong shape gave `KeyError: 'path'` on every re-run, and an unreadable one read as 'it has
    not finished before': each is now named, file and fault, and the stage (its manifest with it) is made again."""
    from dharma_train.manifest import damaged_manifest

    folder = tmp_path / "02_structured"
    folder.mkdir()
    write_manifest(folder, new_manifest("structured", "sft", _inputs(), ModelArtifact(str(folder)), {}))
    written = json.loads((folder / MANIFEST).read_text())
    assert damaged_manifest(folder) is None and read_manifest(folder) is not None
    for damage, fault in [({**written, "artifact": {}}, "its artifact has no path"),
                          ({**written, "train": None}, "its 'train' is missing or not a JSON object"),
                          ({**written, "evaluation": "x"}, "its evaluation has no entry"),
                          ([written], "a JSON list, not an object")]:
        (folder / MANIFEST).write_text(json.dumps(damage))
        assert read_manifest(folder) is None
        assert damaged_manifest(folder) == f"02_structured/manifest.json is damaged ({fault})"
    (folder / MANIFEST).write_text(json.dumps(written)[:100])
    damage = damaged_manifest(folder)
    assert damage == "02_structured/manifest.json is damaged (not valid JSON, or unreadable)"
    assert is_fresh(None, _inputs(), damage) == (False, f"{damage}: the stage is made again, and its manifest with it")
    assert damaged_manifest(tmp_path / "01_none") is None, "no manifest is not damage: the stage never finished"


def test_checkpoints_that_cannot_be_resumed_are_dropped_with_one_line_saying_why(tmp_path, caplog):
    """A damaged attempt.json cannot say what inputs its checkpoints were made with: they are dropped, no longer
    without a word."""
    from dharma_train.run_folder import ATTEMPT

    stage = tmp_path / "02_structured"
    begin_attempt(stage, _inputs(), resume=True)
    (stage / "trainer" / "checkpoint-2").mkdir(parents=True)
    (stage / ATTEMPT).write_text('{"key": "ab')
    with caplog.at_level("WARNING", logger="dharma_train.manifest"):
        assert begin_attempt(stage, _inputs(), resume=True) is False
    assert (f"02_structured: dropping 1 checkpoint(s) in {stage / 'trainer'}: 02_structured/attempt.json, which says "
            f"what inputs they were made with, is damaged, so they cannot be matched to today's") in caplog.text
    (stage / "trainer" / "checkpoint-2").mkdir(parents=True)
    caplog.clear()
    with caplog.at_level("WARNING", logger="dharma_train.manifest"):
        begin_attempt(stage, _inputs(learning_rate=5e-3), resume=True)
    assert "dropping 1 checkpoint(s)" in caplog.text and "they were made with other inputs" in caplog.text
