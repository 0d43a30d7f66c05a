"""Damage each kind of file a run writes, then run the same command again: a correct run, or one clear line.

One short ladder (given training pages, so images are stored; SFT, DPO on synthetic pairs, export) runs once,
uninterrupted; each case damages a copy of it. A run interrupted by SIGTERM gives real checkpoints to damage. The
files: stored images and the tiny model's cache (rebuilt from their source), manifests and stage records (named,
re-derived), a DPO stage's own pairs (collected again, also in a moved run), attempt records and checkpoints
(dropped or passed over, with one line). Other damage is covered where it is made: tests/test_resume.py (model
weights, a full disk), tests/test_run_lock.py (a second run), tests/data/test_lengths.py (an overlong row).
"""

import base64
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytestmark = pytest.mark.slow

STEPS = ["recipe=tiny_random", "stages.structured.optimization.max_steps=2", "stages.dpo.optimization.max_steps=2",
         "stages.dpo.pairs=synthetic", "data.synthetic.eval_pages=2", "evaluation.max_new_tokens=8",
         "trainer.logging_steps=1", "~stages.general_ocr", "~stages.quantize"]


def _run(out: Path, *extra: str, env: dict | None = None) -> tuple[int, str]:
    done = subprocess.run([sys.executable, "-m", "dharma_train", *STEPS, *extra, f"output_dir={out}"],
                          cwd=out.parent, capture_output=True, text=True, timeout=900,
                          env={**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})})
    return done.returncode, done.stdout + done.stderr


def _train_source(folder: Path) -> Path:
    """Six pages whose images arrive as bytes (base64), so the run stores them under data/loaded/images."""
    rows = []
    for i in range(6):
        buffer = io.BytesIO()
        pixels = np.random.default_rng(i).integers(0, 255, (84, 56, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(buffer, "PNG")
        rows.append({"id": f"p{i}", "image_base64": base64.b64encode(buffer.getvalue()).decode(),
                     "assistant": json.dumps({"header": "Diário", "text": f"página {i} do texto"})})
    path = folder / "train.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """The finished run each case copies, and the command's extra word naming its training pages."""
    folder = tmp_path_factory.mktemp("finished")
    source = f"data.train={_train_source(folder)}"
    status, log = _run(folder / "run", source)
    assert status == 0, log[-3000:]
    return folder / "run", source


def _copy(finished_run: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(finished_run, tmp_path / "run", symlinks=True))


def _truncate(path: Path) -> None:
    os.truncate(path, path.stat().st_size // 2)


def test_damaged_derived_files_are_made_again_and_what_finished_is_kept(finished, tmp_path):
    """In one re-run: a stored page image and the tiny model's cache, cut in half, are made again from their
    source; the structured stage is reused although its stage.json is cut (the model card takes its facts from the
    manifest); the DPO stage's manifest, of the wrong shape, is named and the stage made again."""
    run, source = finished
    out = _copy(run, tmp_path)
    cache = Path(shutil.copytree(os.environ["DHARMA_TRAIN_CACHE"], tmp_path / "cache"))
    for weights in cache.glob("tiny-*/model.safetensors"):
        _truncate(weights)
    stored = sorted((out / "data" / "loaded" / "images").iterdir())[0]
    _truncate(stored)
    _truncate(out / "01_structured" / "stage.json")
    manifest = json.loads((out / "02_dpo" / "manifest.json").read_text())
    (out / "02_dpo" / "manifest.json").write_text(json.dumps({**manifest, "artifact": {}}))
    status, log = _run(out, source, env={"DHARMA_TRAIN_CACHE": str(cache)})
    assert status == 0, log[-3000:]
    assert "is damaged, unfinished or from an older dharma_train: building it again" in log
    assert f"stored image {stored} is damaged: made again from its source" in log
    assert "[1/3] stage structured: reused, it finished earlier with the same inputs" in log, log[-3000:]
    assert ("[2/3] stage dpo (dpo): runs because 02_dpo/manifest.json is damaged (its artifact has no path): the "
            "stage is made again, and its manifest with it") in log
    assert ("01_structured/stage.json is damaged: the model card takes that stage's name, kind and config from its "
            "manifest") in log
    assert "Traceback" not in log
    card = (out / "03_export" / "model" / "README.md").read_text()
    assert "<summary>structured (sft)</summary>" in card and '"max_steps": 2' in card
    assert [e["stage"] for e in json.loads((out / "summary.json").read_text())["entries"]] == \
        ["base", "structured", "dpo"]


def test_an_interrupted_dpo_stage_in_a_moved_run_collects_its_pairs_again_and_bad_attempt_records_are_named(
        finished, tmp_path):
    """The DPO stage was interrupted after collecting its pairs (no manifest), and the run was moved: its
    pairs.jsonl names images of the old folder (as mined pairs did before they were stored run-relative). The
    structured stage's attempt record is damaged beside a checkpoint of its own. Each is one line; the run ends."""
    run, source = finished
    out = _copy(run, tmp_path)
    (out / "01_structured" / "manifest.json").unlink()
    (out / "01_structured" / "trainer" / "checkpoint-1").mkdir(parents=True)
    (out / "01_structured" / "attempt.json").write_text('{"key": "')
    (out / "02_dpo" / "manifest.json").unlink()
    pairs = out / "02_dpo" / "pairs.jsonl"
    rows = [json.loads(line) for line in pairs.read_text().splitlines()]
    assert rows and all(row["image"].startswith("../data/") for row in rows), "stored run-relative"
    pairs.write_text("".join(json.dumps({**row, "image": "/gone/old-run/" + row["image"][3:]}) + "\n"
                             for row in rows))
    status, log = _run(out, source)
    assert status == 0, log[-3000:]
    assert (f"01_structured: dropping 1 checkpoint(s) in {out / '01_structured' / 'trainer'}: "
            f"01_structured/attempt.json, which says what inputs they were made with, is damaged") in log, log[-3000:]
    assert f"an interrupted attempt with the same inputs left its work in {out / '02_dpo'}; resuming" in log
    assert (f"dpo: the pairs collected before the interruption cannot be used ({pairs}:1: image /gone/old-run/data/"
            in log and "collecting them again" in log), log[-3000:]
    assert all(json.loads(line)["image"].startswith("../data/") for line in pairs.read_text().splitlines())
    assert "Traceback" not in log


def test_a_damaged_newest_checkpoint_is_passed_over_for_the_one_before(tmp_path):
    """SIGTERM mid-stage leaves two checkpoints; the newest one's weights cut in half: the next run names it and
    resumes from the one before, to the end."""
    out = tmp_path / "run"
    only_sft = ["~stages.dpo", "~stages.export", "stages.structured.optimization.max_steps=8",
                "trainer.checkpoint_every=2", "data.synthetic.train_pages=8"]
    process = subprocess.Popen([sys.executable, "-m", "dharma_train", *STEPS, *only_sft, f"output_dir={out}"],
                               cwd=tmp_path, env={**os.environ, "HF_HUB_OFFLINE": "1"}, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    checkpoints = out / "01_structured" / "trainer"
    deadline = time.monotonic() + 600
    while not (checkpoints / "checkpoint-4" / "trainer_state.json").exists():
        assert process.poll() is None, process.stdout.read()[-3000:]
        assert time.monotonic() < deadline, "no second checkpoint within 10 minutes"
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    stopped = process.communicate(timeout=300)[0]
    assert process.returncode == 143, stopped[-3000:]
    saved = sorted(checkpoints.glob("checkpoint-*"), key=lambda path: int(path.name.split("-")[1]))
    assert len(saved) == 2, saved
    newest, before = saved[-1], saved[-2]
    _truncate(newest / "model.safetensors")
    status, log = _run(out, *only_sft)
    assert status == 0, log[-3000:]
    assert f"{newest}: not resumable, damaged: model.safetensors" in log, log[-3000:]
    assert f"stage structured: resuming from {before} (step {before.name.split('-')[1]})" in log
    assert "Traceback" not in log and (out / "01_structured" / "manifest.json").is_file()
