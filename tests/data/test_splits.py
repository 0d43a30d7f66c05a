"""Splits by image hash: deterministic for a seed, disjoint, and the same image never lands in two splits."""

import io
import json

import datasets
import numpy as np
import pytest
from PIL import Image

from dharma_train.data.config import DataConfig, SplitConfig
from dharma_train.data.loading import REPORT_FILE, load_splits
from dharma_train.data.pages import Page, load_pages
from dharma_train.data.schema import PageAnswer
from dharma_train.data.splits import split_pages, split_size
from dharma_train.errors import DataError


def _pages(n):
    pages = [Page(f"p{i}", f"/x/{i}.png", PageAnswer(text=str(i))) for i in range(n)]
    return pages, {page.id: f"hash-{page.id}" for page in pages}


def test_fractions_seed_and_order():
    pages, hashes = _pages(20)
    splits = split_pages(pages, hashes, {"eval": 0.1, "test": 0.25}, seed=0)
    assert {name: len(chosen) for name, chosen in splits.items()} == {"eval": 2, "test": 5, "train": 13}
    ids = [page.id for chosen in splits.values() for page in chosen]
    assert sorted(ids) == sorted(page.id for page in pages), "every page in exactly one split"
    assert splits == split_pages(pages, hashes, {"eval": 0.1, "test": 0.25}, seed=0)
    assert splits["eval"] != split_pages(pages, hashes, {"eval": 0.1, "test": 0.25}, seed=1)["eval"]
    train_ids = [page.id for page in splits["train"]]
    assert train_ids == sorted(train_ids, key=lambda i: int(i[1:])), "source order kept within a split"


def test_sizes_and_impossible_splits():
    assert (split_size(10, 0.0), split_size(10, 0.01), split_size(10, 0.26)) == (0, 1, 3)
    pages, hashes = _pages(2)
    with pytest.raises(DataError, match="keep any for training"):
        split_pages(pages, hashes, {"eval": 0.5, "test": 0.5}, seed=0)
    with pytest.raises(DataError, match="one page per image"):
        split_pages(pages, {page.id: "same" for page in pages}, {"eval": 0.5}, seed=0)


def _png(seed):
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (40, 30, 3), dtype=np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def test_one_source_split_three_ways_with_a_document_under_two_ids(tmp_path):
    """The same page image under ids 'dup-a' and 'dup-b' is deduplicated before splitting: it cannot leak."""
    rows = [{"id": f"p{i}", "image": _png(i), "assistant": f'{{"text": "página {i}"}}'} for i in range(30)]
    rows += [{"id": "dup-a", "image": _png(99), "assistant": '{"text": "a"}'},
             {"id": "dup-b", "image": _png(99), "assistant": '{"text": "b"}'}]
    datasets.Dataset.from_list(rows).to_parquet(str(tmp_path / "all.parquet"))
    data = DataConfig(train=str(tmp_path / "all.parquet"), split=SplitConfig(eval=0.2, test=0.1, seed=3))
    sets = load_splits(data, tmp_path / "run" / "data")
    assert {name: len(pages) for name, pages in sets.items()} == {"train": 22, "eval": 6, "test": 3}
    ids = [[page.id for page in pages] for pages in sets.values()]
    everything = [page_id for split in ids for page_id in split]
    assert len(everything) == len(set(everything)) == 31 and "dup-b" not in everything
    images = [page.image.read_bytes() for pages in sets.values() for page in pages]
    assert len(images) == len(set(images)), "no image in two splits"
    for name, pages in sets.items():
        assert pages.root == tmp_path / "run" / "data" / "loaded" / name
        assert [p.id for p in load_pages(pages.root)] == [p.id for p in pages], "each split saved and reloadable"
    again = load_splits(data, tmp_path / "run2" / "data")
    assert {k: [p.id for p in v] for k, v in again.items()} == {k: [p.id for p in v] for k, v in sets.items()}


def test_separate_sources_lose_pages_already_in_train_and_the_report_says_so(tmp_path):
    train = [{"id": i, "image": _png(i), "assistant": '{"text": "t"}'} for i in range(4)]
    evaluation = [{"id": 10 + i, "image": _png(i + 3), "assistant": '{"text": "e"}'} for i in range(3)]
    datasets.Dataset.from_list(train).to_parquet(str(tmp_path / "train.parquet"))
    datasets.Dataset.from_list(evaluation).to_parquet(str(tmp_path / "eval.parquet"))
    data = DataConfig(train=str(tmp_path / "train.parquet"), eval=str(tmp_path / "eval.parquet"))
    sets = load_splits(data, tmp_path / "data")
    assert [page.id for page in sets["eval"]] == ["11", "12"]
    report = json.loads((tmp_path / "data" / REPORT_FILE).read_text())
    assert report["splits"] == {"train": 4, "eval": 2}
    assert report["sources"][1]["skips"] == {"image_in_other_split": 1}
    assert report["reasons"]["skip"]["image_in_other_split"].startswith("the same image bytes")


def test_an_eval_split_that_lost_most_rows_to_leaks_stops_instead_of_evaluating_on_what_is_left(tmp_path):
    """38 eval rows, 37 of them train pages under other ids: 1 page left would be evaluated as if it were 38."""
    train = [{"id": i, "image": _png(i), "assistant": '{"text": "t"}'} for i in range(40)]
    evaluation = [{"id": 100 + i, "image": _png(i if i < 37 else 200), "assistant": '{"text": "e"}'} for i in range(38)]
    datasets.Dataset.from_list(train).to_parquet(str(tmp_path / "train.parquet"))
    datasets.Dataset.from_list(evaluation).to_parquet(str(tmp_path / "eval.parquet"))
    data = DataConfig(train=str(tmp_path / "train.parquet"), eval=str(tmp_path / "eval.parquet"))
    with pytest.raises(DataError, match=r"eval\.parquet \(the eval pages\) lost 37 of its 38 rows \(97%: "
                                        r"image_in_other_split 37\), more than the 50% allowed"):
        load_splits(data, tmp_path / "data")
    assert json.loads((tmp_path / "data" / REPORT_FILE).read_text())["splits"] == {"train": 40, "eval": 1}
    data = DataConfig(train=data.train, eval=data.eval, max_skipped_share=1.0)
    assert len(load_splits(data, tmp_path / "data")["eval"]) == 1, "a share of 1 never stops"


def test_a_source_with_no_usable_rows_fails_after_writing_its_report(tmp_path):
    rows = [{"id": 1, "image": b"junk", "assistant": '{"text": "x"}'}]
    datasets.Dataset.from_list(rows).to_parquet(str(tmp_path / "bad.parquet"))
    with pytest.raises(DataError, match=r"data\.train: no usable pages .*corrupt_image 1.*load_report\.json"):
        load_splits(DataConfig(train=str(tmp_path / "bad.parquet")), tmp_path / "data")
    assert (tmp_path / "data" / REPORT_FILE).is_file()


def test_nothing_configured_loads_nothing(tmp_path):
    assert load_splits(DataConfig(), tmp_path) == {}
    assert not (tmp_path / REPORT_FILE).exists()


def test_a_stage_s_own_pages_and_given_pairs_naming_an_evaluation_image_are_skipped_as_leaks(tmp_path):
    """The run's splits load in order and catch each other's images, but a stage's own pages (`stages.NAME.data`)
    and given pairs were never checked against the evaluation pages: a training row naming an evaluation image
    trained on it unreported."""
    from dharma_train.cli.compose import compose_config
    from dharma_train.config import validate
    from dharma_train.run_inputs import resolve_inputs

    images = tmp_path / "images"
    images.mkdir()
    for i in range(8):
        (images / f"{i}.png").write_bytes(_png(i))

    def jsonl(name, rows):
        (tmp_path / name).write_text("".join(json.dumps(row) + "\n" for row in rows))
        return tmp_path / name

    def page(prefix, i):
        return {"id": f"{prefix}{i}", "image": str(images / f"{i}.png"), "assistant": '{"text": "t"}'}

    train = jsonl("train.jsonl", [page("t", i) for i in range(4)])
    evaluation = jsonl("eval.jsonl", [page("e", i) for i in (4, 5)])
    own = jsonl("own.jsonl", [page("o", i) for i in (5, 6, 7)])
    pairs = jsonl("pairs.jsonl", [{"id": f"p{i}", "image": str(images / f"{i}.png"), "chosen": "a",
                                   "rejected": "b b b"} for i in (4, 6, 7)])
    run = tmp_path / "run"
    config = validate(compose_config([f"output_dir={run}", "~stages.general_ocr", "~stages.quantize",
                                      "~stages.export", f"data.train={train}", f"data.eval={evaluation}",
                                      f"stages.structured.data={own}", f"stages.dpo.pairs={pairs}"]))
    inputs = resolve_inputs(config)
    assert [page.id for page in inputs.stage_pages["structured"]] == ["o6", "o7"]
    assert [pair.id for pair in inputs.stage_pairs["dpo"].pairs()] == ["p6", "p7"]
    for report, skipped in ((run / "data" / "stages" / "structured" / REPORT_FILE, "o5"),
                            (run / "data" / "stages" / "dpo" / "pairs" / REPORT_FILE, "p4")):
        source = json.loads(report.read_text())["sources"][0]
        assert source["skips"] == {"image_in_other_split": 1}
        assert [(row["id"], row["reason"]) for row in source["skipped_rows"]] == [(skipped, "image_in_other_split")]
        assert source["examples"]["image_in_other_split"][0]["detail"] == "the same image is already in the eval split"
