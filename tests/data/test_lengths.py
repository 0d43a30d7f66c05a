"""The sequence-length bound at load time: a row longer than the model can train on is skipped and named, cheaply."""

import io
import json
import time

import numpy as np
import pytest
from PIL import Image

from dharma_train.data.lengths import length_bound, smart_resize
from dharma_train.data.loading import REPORT_FILE, load_source
from dharma_train.data.pairs import load_pair_source
from dharma_train.errors import DataError
from dharma_train.models.config import ModelConfig

HUGE = 52_000_000  # the answer that once grew a training step to 21 GB


@pytest.fixture(scope="module")
def bound():
    return length_bound(ModelConfig())  # the tiny model: 4096 positions, 75264 pixels per image


def _png(tmp_path, name="page.png", size=(200, 280)):
    buffer = io.BytesIO()
    Image.fromarray(np.full((size[1], size[0], 3), 255, dtype=np.uint8)).save(buffer, "PNG")
    (tmp_path / name).write_bytes(buffer.getvalue())
    return tmp_path / name


def _jsonl(path, rows):
    with path.open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row) + "\n")
    return path


def test_the_tiny_model_s_bound_and_its_image_tokens_follow_the_processor(bound):
    assert bound.max_length == 4096 and bound.setting.startswith("the model's max_position_embeddings")
    assert (bound.factor, bound.min_pixels, bound.max_pixels) == (28, 3136, 75264)
    assert 50 < bound.prompt_tokens < 120, "the chat template with the longest instruction"
    try:
        from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize as theirs
    except ImportError:  # another transformers layout: the values below were taken from it (5.23)
        theirs = None
    for height, width in ((1000, 800), (30, 40), (4000, 3000), (28, 5000)):
        ours = smart_resize(height, width, 28, 3136, 75264)
        assert theirs is None or ours == tuple(theirs(height, width, factor=28, min_pixels=3136, max_pixels=75264))
    assert bound.image_tokens(800, 1000) == 80 <= 75264 // 28**2, "at most max_pixels / 784"


def test_a_52_million_character_answer_is_skipped_and_named_without_tokenizing_it(tmp_path, bound):
    """It passed every check ('17 rows, 17 used') and training took the machine down; now the loader skips it in
    seconds, counting characters, and says where it is. A long answer that may still fit is tokenized exactly."""
    image = [_png(tmp_path, f"{i}.png", (200 + i, 280)) for i in range(4)]  # four pages, not duplicates
    near = "palavra " * 1200  # over the byte bound, under the character bound: tokenized (4 tokens a word), and over
    source = _jsonl(tmp_path / "pages.jsonl", [
        {"id": "ok", "image": str(image[0]), "assistant": json.dumps({"text": "uma página"})},
        {"id": "huge", "image": str(image[1]), "assistant": json.dumps({"text": "a" * HUGE})},
        {"id": "near", "image": str(image[2]), "text": near},
        {"id": "fits", "image": str(image[3]), "text": "palavra " * 300}])
    counted = []
    object.__setattr__(bound, "count", lambda text, count=bound.count: counted.append(len(text)) or count(text))
    started = time.monotonic()
    loaded = load_source(source, tmp_path / "images", bounds=(bound,))
    seconds = time.monotonic() - started
    assert [page.id for page in loaded.pages] == ["ok", "fits"], "the overlong rows are not handed to training"
    assert loaded.report.skips == {"overlong": 2}
    assert [(row["row"], row["id"]) for row in loaded.report.skipped_rows] == [(f"{source}:2", "huge"),
                                                                                 (f"{source}:3", "near")]
    huge, near_detail = (example["detail"] for example in loaded.report.examples["overlong"])  # the JSON answer
    assert huge.startswith("image and instruction take ") and "the answer at least " in huge
    assert "(52,000,054 characters), over the maximum sequence length 4096 (the model's max_position_embeddings; " \
           "set model.max_length to bound it lower)" in huge
    assert "the answer at least" not in near_detail and "characters), over the maximum sequence length" in near_detail
    assert all(length < 10_000 for length in counted), "the 52 M characters were never tokenized"
    assert seconds < 60, f"{seconds:.0f} s"
    with pytest.raises(DataError, match=rf"{source}:2 \(id 'huge'\): overlong: image and instruction take "):
        load_source(source, tmp_path / "images", bounds=(bound,), strict=True)


def test_model_max_length_bounds_lower_and_pairs_are_bounded_by_their_longer_answer(tmp_path):
    images = [_png(tmp_path, f"{i}.png", (200 + i, 280)) for i in range(2)]
    bound = length_bound(ModelConfig(max_length=300))
    assert bound.max_length == 300 and bound.setting == "model.max_length"
    source = _jsonl(tmp_path / "pairs.jsonl", [
        {"id": "p0", "image": str(images[0]), "chosen": "certo", "rejected": "errado " * 5},
        {"id": "p1", "image": str(images[1]), "chosen": "certo", "rejected": "laço " * 400}])
    pairs, report = load_pair_source(source, tmp_path / "images", bounds=(bound,))
    assert [pair.id for pair in pairs] == ["p0"] and report.skips == {"overlong": 1}
    assert "over the maximum sequence length 300 (model.max_length)" in report.examples["overlong"][0]["detail"]
    with pytest.raises(ValueError, match="model.max_length must be >= 1"):
        ModelConfig(max_length=0)


def test_a_run_skips_an_overlong_training_row_and_its_load_report_names_it(tmp_path, caplog):
    """Through the run's own loading (resolve_inputs): the row is in the load report and the log line, and not in
    the pages any stage trains on."""
    from dharma_train.cli.compose import compose_config
    from dharma_train.config import validate
    from dharma_train.run_inputs import resolve_inputs

    rows = [{"id": f"p{i}", "image": str(_png(tmp_path, f"{i}.png", (200 + i, 280))),
             "assistant": json.dumps({"text": f"página {i}"})} for i in range(4)]
    rows[2]["assistant"] = json.dumps({"text": "a" * HUGE})
    train = _jsonl(tmp_path / "train.jsonl", rows)
    config = validate(compose_config([f"output_dir={tmp_path / 'run'}", f"data.train={train}",
                                      "data.max_skipped_share=0.5", "data.synthetic.eval_pages=2",
                                      "~stages.general_ocr", "~stages.dpo", "~stages.quantize", "~stages.export"]))
    with caplog.at_level("WARNING", logger="dharma_train.data.loading"):
        inputs = resolve_inputs(config)
    assert [page.id for page in inputs.train] == ["p0", "p1", "p3"]
    assert f"data.train {train} (jsonl): 4 rows: 3 used (0 fixed), 1 skipped; skipped: overlong 1" in caplog.text
    report = json.loads((tmp_path / "run" / "data" / REPORT_FILE).read_text())
    assert report["sources"][0]["skipped_rows"] == [{"row": f"{train}:3", "id": "p2", "reason": "overlong"}]
    assert report["reasons"]["skip"]["overlong"].startswith("the image's tokens, the instruction and the answer")
