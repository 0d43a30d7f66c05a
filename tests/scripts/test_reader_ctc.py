"""scripts/experiments/tiny_reader/reader_ctc.py, reader_data.py, reader_checkpoint.py and pretrain_ctc_reader.py at toy scale on the CPU."""

import json
import random

import numpy as np
import pytest
import torch

from dharma_train.models.tiny import TINY_SHAPE, build_tiny_model, build_tiny_processor
from scripts.experiments.tiny_reader import pretrain_ctc_reader, reader_checkpoint
from scripts.experiments.tiny_reader.reader_ctc import ALPHABET, CTCHead, PatchFeatures, encode, greedy_decode
from scripts.experiments.tiny_reader.reader_data import draw_sample

TOY = {**TINY_SHAPE, "max_pixels": 28 * 28 * 256}
WORDS = ["página", "ação", "Brasil", "cópia", "9,50"]


def toy_model():
    processor = build_tiny_processor(TOY)
    return build_tiny_model(processor.tokenizer, TOY), processor


def device_batches(processor):
    return pretrain_ctc_reader.task_batches(processor, torch.device("cpu"))


def test_greedy_decode_collapses_repeats_and_drops_blanks():
    a, b = encode("a")[0], encode("b")[0]
    path = torch.tensor([[0, a, a, 0, a, b, b, 0]])
    log_probs = torch.nn.functional.one_hot(path, len(ALPHABET) + 1).float().log()
    assert greedy_decode(log_probs) == ["aab"]
    assert encode("ação 9,50") == [ALPHABET.index(c) + 1 for c in "ação 9,50"]


def test_bands_put_the_towers_window_ordered_patches_back_in_image_order():
    model, processor = toy_model()
    visual = model.model.visual
    visual.blocks = torch.nn.ModuleList()  # the output is then each patch's embedding, in window order
    features = PatchFeatures(model, band_rows=1)
    image, _, _ = draw_sample("lines", random.Random(1), WORDS)  # 448 x 112: 8 x 32 patches, several windows
    batches = device_batches(processor)
    pixels = torch.from_numpy(np.array(image))[None]
    flat, grid = batches.pixel_values(pixels)
    with torch.no_grad():
        visual(flat, grid_thw=grid)
        bands = features.bands()[0]  # (8 rows, 32 columns, C)
        normalized = (pixels.float()[0] / 255 - batches.mean[0]) / batches.std[0]  # (3, H, W)
        for row, column in [(0, 0), (0, 31), (3, 5), (7, 17), (5, 30)]:
            patch = normalized[:, row * 14:(row + 1) * 14, column * 14:(column + 1) * 14]
            cut = patch[:, None].expand(-1, 2, -1, -1).reshape(1, -1)  # (channel, 2 frames, 14, 14)
            assert torch.allclose(bands[row, column], visual.patch_embed(cut)[0], atol=1e-5), (row, column)


def test_ctc_loss_is_finite_and_falls_on_a_fixed_batch():
    torch.manual_seed(0)
    model, processor = toy_model()
    features, batches = PatchFeatures(model), device_batches(processor)
    head = CTCHead(TOY["vision_hidden_size"])
    rng = random.Random(0)
    samples = [draw_sample("line", rng, WORDS) for _ in range(4)]
    collate = pretrain_ctc_reader.Collate(processor.tokenizer)
    parts = collate(samples)
    params = list(model.model.visual.parameters()) + list(head.parameters())
    optimizer = torch.optim.AdamW(params, lr=2e-3)
    losses = []
    for _ in range(25):
        loss, _ = pretrain_ctc_reader.step_loss("ctc", parts, model, head, features, batches, None)
        assert torch.isfinite(loss)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0], losses


def test_joint_step_adds_the_ctc_loss_to_the_next_token_loss():
    model, processor = toy_model()
    features, batches = PatchFeatures(model), device_batches(processor)
    head = CTCHead(TOY["vision_hidden_size"])
    parts = pretrain_ctc_reader.Collate(processor.tokenizer)([draw_sample("lines", random.Random(2), WORDS)])
    args = pretrain_ctc_reader.parse_arguments(["--out", "x", "--ctc-weight", "0.5"])
    loss, logged = pretrain_ctc_reader.step_loss("lines", parts, model, head, features, batches, args)
    assert set(logged) == {"lm_lines", "ctc"}
    assert loss.item() == pytest.approx(logged["lm_lines"] + 0.5 * logged["ctc"], rel=1e-4)


def test_phase_at_finds_the_phase_of_a_global_step():
    phases = [("ctc", 10), ("line", 5)]
    assert pretrain_ctc_reader.phase_at(phases, 0) == (0, 0)
    assert pretrain_ctc_reader.phase_at(phases, 12) == (1, 2)
    assert pretrain_ctc_reader.phase_at(phases, 15) == (2, 0)


@pytest.mark.slow
def test_a_run_saves_a_plain_model_and_resumes_where_it_stopped(tmp_path):
    common = ["--shape", json.dumps({"max_pixels": 28 * 28 * 256}), "--batch", "2", "--page-batch", "2",
              "--eval-every", "100", "--eval-lines", "2", "--eval-pages", "1", "--workers", "0", "--warmup", "2"]
    pretrain_ctc_reader.main(["--out", str(tmp_path / "a"), "--phases", "ctc:3,line:2", *common])
    checkpoint = tmp_path / "a" / "checkpoint"
    state = json.loads((checkpoint / "state.json").read_text())
    assert state["step"] == 5
    points = [json.loads(line) for line in (tmp_path / "a" / "curve.jsonl").read_text().splitlines()]
    assert [p["step"] for p in points] == [3, 5] and "cer_printed" in points[-1] and "cer_lines" in points[-1]

    shards = list((checkpoint / "model").glob("*.safetensors"))
    assert shards and all(s.stat().st_size <= 15_000_000 for s in shards)
    from safetensors import safe_open
    from transformers import AutoTokenizer, Qwen2_5_VLForConditionalGeneration

    keys = {key for shard in shards for key in safe_open(str(shard), "pt").keys()}
    assert not any("ctc" in key or key.startswith(("norm.", "proj.")) for key in keys)
    plain = Qwen2_5_VLForConditionalGeneration.from_pretrained(checkpoint / "model")
    assert AutoTokenizer.from_pretrained(checkpoint / "model").convert_tokens_to_ids("<|im_end|>") is not None

    model, _, head, loaded_state = reader_checkpoint.load(checkpoint, torch.device("cpu"))
    assert all(torch.equal(a, b) for a, b in zip(plain.state_dict().values(), model.state_dict().values()))
    assert loaded_state == state and head.frames_per_column == 3

    pretrain_ctc_reader.main(["--out", str(tmp_path / "b"), "--resume", str(checkpoint), "--phases",
                              "ctc:3,line:4", *common])
    resumed = json.loads((tmp_path / "b" / "checkpoint" / "state.json").read_text())
    assert resumed["step"] == 7 and [c["from_step"] for c in resumed["calls"]] == [0, 5]
    points = [json.loads(line) for line in (tmp_path / "b" / "curve.jsonl").read_text().splitlines()]
    assert [p["step"] for p in points] == [7] and points[0]["phase"] == "line"


def test_page_phases_take_their_side_kinds_in_turn_between_page_batches(tmp_path):
    """--side-kinds lines,line: page, lines, page, line, ... so single lines stay in the page phase's mix."""
    common = ["--shape", json.dumps({"max_pixels": 28 * 28 * 256}), "--batch", "2", "--page-batch", "2",
              "--eval-every", "100", "--eval-lines", "2", "--eval-pages", "1", "--workers", "0", "--warmup", "2"]
    pretrain_ctc_reader.main(["--out", str(tmp_path / "a"), "--phases", "page:4", "--side-kinds", "lines,line",
                              *common])
    point = json.loads((tmp_path / "a" / "curve.jsonl").read_text().splitlines()[-1])
    assert point["step"] == 4 and {"lm_page", "lm_lines", "lm_line"} <= set(point), point


def test_the_repository_checkpoint_resumes_from_the_shipped_reader_it_names():
    """docs/experiments/tiny-reader/checkpoint keeps no model copy: state.json's model_dir is the package's reader."""
    from pathlib import Path

    from transformers import Qwen2_5_VLForConditionalGeneration

    checkpoint = Path("docs/experiments/tiny-reader/checkpoint")
    model, _, head, state = reader_checkpoint.load(checkpoint, torch.device("cpu"))
    shipped = Qwen2_5_VLForConditionalGeneration.from_pretrained("dharma_train/models/tiny_reader")
    assert state["model_dir"] == "dharma_train/models/tiny_reader" and not (checkpoint / "model").exists()
    assert all(torch.equal(a, b) for a, b in zip(shipped.state_dict().values(), model.state_dict().values()))


def test_a_checkpoint_without_a_model_says_what_is_missing(tmp_path):
    """No model/ and no model_dir: the error names the folder, not a transformers stack trace."""
    (tmp_path / "state.json").write_text(json.dumps({"step": 1, "frames_per_column": 3}))
    with pytest.raises(FileNotFoundError, match="no model/ folder and no model_dir"):
        reader_checkpoint.load(tmp_path, torch.device("cpu"))
