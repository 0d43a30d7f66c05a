import io
import json

import datasets
import numpy as np
import pytest
from PIL import Image

from dharma_train import DPOStage, DPOStageConfig
from dharma_train.data.pairs import load_given_pairs, load_pair_source, load_pairs, loop_pairs, save_pairs
from dharma_train.errors import DataError
from dharma_train.evaluation.metrics import is_degenerate


def test_loop_pairs_reject_a_looping_answer_and_choose_the_truth(pages):
    train, _ = pages
    pairs = loop_pairs(train, "structured", seed=0)
    assert len(pairs) == len(train)
    for pair, page in zip(pairs, train):
        assert pair.chosen == page.answer.to_json()
        assert pair.rejected != pair.chosen
        assert is_degenerate(pair.rejected, hit_token_limit=True)


def test_pairs_round_trip_and_bad_rows_are_named(tmp_path, pages):
    pairs = loop_pairs(pages[0], "plain")
    path = save_pairs(pairs, tmp_path)
    assert load_pairs(tmp_path) == pairs
    rows = path.read_text().splitlines()
    broken = json.loads(rows[1])
    broken["rejected"] = broken["chosen"]
    path.write_text("\n".join([rows[0], json.dumps(broken)]))
    with pytest.raises(DataError, match=r"pairs\.jsonl:2: 'chosen' and 'rejected' are identical"):
        load_pairs(path)
    with pytest.raises(DataError, match="does not exist"):
        load_pairs(tmp_path / "none.jsonl")


def _png(seed):
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (40, 30, 3), dtype=np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def _pair_parquet(path):
    rows = [{"id": "a", "prompt": "Transcribe", "image": _png(0), "chosen": '{"text": "a"}', "rejected": "a a a a"},
            {"id": "b", "prompt": "Transcribe", "image": _png(1), "chosen": "same", "rejected": "same"},
            {"id": "c", "prompt": "Transcribe", "image": b"junk", "chosen": "x", "rejected": "y"},
            {"id": "d", "prompt": "Transcribe", "image": _png(2), "chosen": None, "rejected": "y"},
            {"id": "e", "prompt": "Transcribe", "image": _png(3), "chosen": "  ", "rejected": "y"},
            {"id": "a", "prompt": "Transcribe", "image": _png(4), "chosen": "x", "rejected": "y"}]
    datasets.Dataset.from_list(rows).to_parquet(str(path))
    return path


def test_pairs_from_a_parquet_are_checked_row_by_row(tmp_path):
    pairs, report = load_pair_source(_pair_parquet(tmp_path / "pairs.parquet"), tmp_path / "images")
    assert [(p.id, p.chosen, p.rejected) for p in pairs] == [("a", '{"text": "a"}', "a a a a")]
    assert pairs[0].image.parent == tmp_path / "images" and pairs[0].source == "given"
    assert report.skips == {"identical_pair": 1, "corrupt_image": 1, "missing_field": 1, "empty_answer": 1,
                            "duplicate_id": 1}
    assert dict(report.ignored_columns) == {"prompt": 6}, "the stage's own prompt is used, and the report says so"
    with pytest.raises(DataError, match=r"row 1 \(id 'b'\): identical_pair"):
        load_pair_source(tmp_path / "pairs.parquet", tmp_path / "images", strict=True)


def test_pairs_in_trl_layout_with_an_images_list(tmp_path):
    rows = [{"images": [{"bytes": _png(i), "path": None}], "chosen": f"c{i}", "rejected": f"r{i}"} for i in range(2)]
    features = datasets.Features({"images": datasets.Sequence(datasets.Image()), "chosen": datasets.Value("string"),
                                  "rejected": datasets.Value("string")})
    datasets.Dataset.from_list(rows, features=features).save_to_disk(str(tmp_path / "saved"))
    pairs, loaded = load_given_pairs(str(tmp_path / "saved"), tmp_path / "images")
    assert [(p.id, p.chosen) for p in pairs] == [("0", "c0"), ("1", "c1")]
    assert loaded["load_report"]["used"] == 2


def test_dpo_stage_checks_a_pair_source_before_any_model_loads(tmp_path, pages):
    DPOStage("dpo", DPOStageConfig(pairs=str(_pair_parquet(tmp_path / "p.parquet")))).check()
    with pytest.raises(DataError, match="holds pages, not pairs"):
        DPOStage("dpo", DPOStageConfig(pairs=str(pages[0].root))).check()
    with pytest.raises(DataError, match="does not exist"):
        DPOStage("dpo", DPOStageConfig(pairs=str(tmp_path / "none.parquet"))).check()
