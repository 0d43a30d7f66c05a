import io
import json
import unicodedata

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


def test_pair_answers_get_the_pages_text_hygiene(tmp_path):
    nfd = unicodedata.normalize("NFD", "ação")
    rows = [{"id": "a", "image": _png(0), "chosen": "\ufeffuma\r\n" + nfd, "rejected": "uma uma uma"}]
    datasets.Dataset.from_list(rows).to_parquet(str(tmp_path / "pairs.parquet"))
    pairs, report = load_pair_source(tmp_path / "pairs.parquet", tmp_path / "images")
    assert pairs[0].chosen == "uma\nação"
    assert report.fixes == {"removed_bom": 1, "normalized_newlines": 1, "normalized_unicode": 1} and report.fixed == 1


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


def _pairs_file_with_bad_rows(folder, pages):
    """A pairs.jsonl of 6 rows: 2 good, then identical answers, a missing image, a line that is not JSON and a row
    with no 'chosen' (lines 3 to 6)."""
    path = save_pairs(loop_pairs(pages, "structured", seed=0)[:4], folder)
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    rows[2]["rejected"] = rows[2]["chosen"]
    rows[3]["image"] = "gone.png"
    lines = [json.dumps(row) for row in rows] + ["{not json", json.dumps({"id": "x", "image": rows[0]["image"],
                                                                            "rejected": "y"})]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_a_pairs_file_follows_the_pages_policy_skipping_and_listing_every_bad_row(tmp_path, pages):
    path = _pairs_file_with_bad_rows(tmp_path / "given", pages[0])
    pairs, loaded = load_given_pairs(path, tmp_path / "images")
    assert len(pairs) == 2 and all(pair.source == "synthetic" for pair in pairs), "a saved pair keeps its source"
    report = loaded["load_report"]
    assert (report["rows"], report["used"], report["skipped"]) == (6, 2, 4)
    assert report["skips"] == {"identical_pair": 1, "missing_file": 1, "invalid_json": 1, "missing_field": 1}
    assert [(row["row"], row["reason"]) for row in report["skipped_rows"]] == [
        (f"{path}:3", "identical_pair"), (f"{path}:4", "missing_file"), (f"{path}:5", "invalid_json"),
        (f"{path}:6", "missing_field")]
    with pytest.raises(DataError, match=rf"^{path}:3 \(id '[^']+'\): identical_pair: .*without data.strict"):
        load_given_pairs(path.parent, tmp_path / "images", strict=True)


def test_a_runs_pairs_are_loaded_once_with_a_load_report_that_report_md_counts(tmp_path, pages):
    from dharma_train.data.pairs import load_pair_set
    from dharma_train.reporting.run_record import run_provenance

    path = _pairs_file_with_bad_rows(tmp_path / "given", pages[0])
    run = tmp_path / "run"
    pair_set = load_pair_set(path, run / "data" / "stages" / "dpo" / "pairs", split="stages.dpo.pairs")
    folder = pair_set.root
    assert len(pair_set.pairs()) == 2 == len(load_pairs(folder)) and pair_set.report()["source"] == str(path)
    saved = json.loads((folder / "load_report.json").read_text())
    assert saved["splits"] == {"stages.dpo.pairs": 2} and len(saved["sources"][0]["skipped_rows"]) == 4
    assert set(saved["reasons"]["skip"]) == {"identical_pair", "missing_file", "invalid_json", "missing_field"}
    assert run_provenance(run)["loaded"] == [
        f"`{path}` (stages.dpo.pairs): 6 rows, 4 skipped (identical_pair 1, invalid_json 1, missing_field 1, "
        f"missing_file 1); 2 used, 0 fixed; format jsonl"]


def test_saved_pairs_name_their_own_images_relative_to_the_folder(tmp_path, pages):
    pairs = load_given_pairs(_pair_parquet(tmp_path / "p.parquet"), tmp_path / "out" / "images")[0]
    path = save_pairs(pairs, tmp_path / "out")
    assert json.loads(path.read_text().splitlines()[0])["image"].startswith("images/")
    (tmp_path / "out").rename(tmp_path / "moved")
    assert load_pairs(tmp_path / "moved")[0].image.is_file(), "the folder moved with its images"


def test_pairs_a_stage_mined_from_the_run_s_pages_follow_a_moved_run_and_old_absolute_ones_still_read(tmp_path):
    """Mined pairs stored absolute image paths: a run moved while its DPO stage was interrupted stopped on every
    re-run. Pairs saved `within` the run folder name its images relative to their own folder."""
    from dharma_train.data.synthetic.generate import generate_pages

    run = tmp_path / "run"
    pages = generate_pages(run / "data" / "train", n=2, seed=3)
    pairs = loop_pairs(pages, "structured", seed=0)
    path = save_pairs(pairs, run / "03_dpo", within=run)
    assert [json.loads(row)["image"] for row in path.read_text().splitlines()] == \
        [f"../data/train/images/{page.image.name}" for page in pages]
    run.rename(tmp_path / "moved")
    moved = load_pairs(tmp_path / "moved" / "03_dpo")
    assert [pair.image.resolve() for pair in moved] == [tmp_path / "moved" / "data" / "train" / "images" /
                                                        page.image.name for page in pages]
    old = save_pairs(moved, tmp_path / "elsewhere")  # outside the tree: absolute, as pairs were written before
    assert json.loads(old.read_text().splitlines()[0])["image"] == str(moved[0].image)
    assert [pair.image for pair in load_pairs(old)] == [pair.image for pair in moved], \
        "absolute paths that exist still read"


def test_a_dpo_stage_s_own_damaged_pairs_are_collected_again_with_one_warning(tmp_path, pages, caplog):
    """Pairs a stage collected are derived (the input model's answers, the pages): a damaged pairs.jsonl, or one
    naming images of a run folder that moved, reads as None with one warning, and the stage collects them again."""
    from dharma_train.stages.dpo import collected_pairs

    folder = tmp_path / "03_dpo"
    path = save_pairs(loop_pairs(pages[0], "structured", seed=0)[:3], folder)
    assert len(collected_pairs(folder, "dpo")) == 3
    path.write_text(path.read_text()[:-40])
    with caplog.at_level("WARNING", logger="dharma_train.stages.dpo"):
        assert collected_pairs(folder, "dpo") is None
    assert f"dpo: the pairs collected before the interruption cannot be used ({path}:3: not valid JSON" in caplog.text
    assert "collecting them again" in caplog.text
    row = json.loads(path.read_text().splitlines()[0])
    path.write_text(json.dumps({**row, "image": "/old/run/data/train/gone.png"}) + "\n")
    assert collected_pairs(folder, "dpo") is None, "an image gone with a moved run: collected again"
    with pytest.raises(DataError, match=rf"{path}:1: image /old/run/data/train/gone.png does not exist"):
        load_pairs(path)  # read as a given pairs file, the same damage stays an error naming file and line
