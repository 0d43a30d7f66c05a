"""Each bad configuration and each bad input gives one clear error before any model loads (issue 9's table).

The command line prints these messages alone and exits with status 2 (tests/test_main.py runs a few end to end).
"""

import json

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from dharma_train.config import validate
from dharma_train.config_files import config_dir, register_recipes
from dharma_train.errors import ConfigError, DataError
from dharma_train.run import execute


def _values(**changes):
    """The tiny recipe as plain values, with dotted keys set (unknown ones included, which Hydra itself refuses)."""
    register_recipes()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        values = OmegaConf.to_container(compose(config_name="config", overrides=["output_dir=/tmp/x"]),
                                        resolve=True)
    for dotted, value in changes.items():
        *parents, last = dotted.split("__")
        node = values
        for name in parents:
            node = node[name]
        node[last] = value
    return values


@pytest.mark.parametrize("changes, message", [
    ({"trainer__resum": "auto"}, r"config key 'trainer\.resum'"),
    ({"trainer__checkpoint_every": "often"}, r"config key 'trainer\.checkpoint_every'"),
    ({"trainer__resume": "sometimes"}, r"trainer\.resume must be one of \['auto', 'never'\]"),
    ({"trainer__on_nonfinite": "ignore"}, r"trainer\.on_nonfinite must be one of \['stop', 'skip'\]"),
    ({"trainer__keep_checkpoints": 0}, r"keep_checkpoints >= 1"),
    ({"trainer__precision": "bf16"}, r"trainer\.precision=bf16 with trainer\.device=cpu is not supported"),
    ({"stages__structured__optimization__method": "qlora"},
     r"stages\.structured.*optimization\.method must be one of \['lora', 'full'\], got 'qlora'"),
    ({"stages__structured__optimization__save": "adapter"}, r"save=adapter needs optimization\.method=lora"),
    ({"stages__structured__optimization__max_steps": 0}, r"set max_steps > 0, or max_steps=-1 and epochs > 0"),
    # issue 34: values that passed validation and failed mid-run, or silently did something else
    ({"stages__structured__optimization__max_steps": -5}, r"structured.*got max_steps=-5"),
    ({"stages__structured__optimization__warmup": -0.1}, r"structured.*warmup and weight_decay must be >= 0"),
    ({"stages__structured__optimization__lora__r": 0}, r"structured.*lora: r >= 1"),
    ({"model__max_pixels": 0}, r"model\.max_pixels must be >= 1"),
    ({"model__min_pixels": -1}, r"model\.min_pixels must be >= 1"),
    ({"evaluation__max_pages": -1}, r"evaluation\.max_pages must be >= 1"),
    ({"stages__dpo__mining__reasons": []}, r"mining\.reasons must be a non-empty subset"),
    ({"stages__dpo__mining__greedy": False, "stages__dpo__mining__samples_per_page": 0},
     r"mining needs greedy=true or samples_per_page >= 1"),
    ({"stages__dpo__beta": 0}, r"beta must be > 0"),
    ({"model__min_pixels": 4096, "model__max_pixels": 1024}, r"model\.min_pixels \(4096\) exceeds"),
])
def test_bad_config_is_one_error_naming_the_key(changes, message):
    with pytest.raises(ConfigError, match=message):
        validate(_values(**changes))


@pytest.fixture(scope="module")
def splits(tmp_path_factory):
    from dharma_train.data.synthetic.generate import generate_splits

    train, evaluation = generate_splits(tmp_path_factory.mktemp("splits"), n_train=2, n_eval=1, seed=3)
    return train, evaluation


def _bad_pages(folder, split):
    folder.mkdir()
    rows = (split.root / "pages.jsonl").read_text().splitlines()
    image = json.loads(rows[0])["image"]
    return folder, rows, split.root / image


def _broken_json(folder, split):
    folder, rows, image = _bad_pages(folder, split)
    (folder / "pages.jsonl").write_text(json.dumps({**json.loads(rows[0]), "image": str(image)}) + "\n{oops\n")
    return {"data__train": str(folder), "data__strict": True}  # without strict the bad row is skipped and counted


def _missing_image(folder, split):
    folder, rows, _ = _bad_pages(folder, split)
    (folder / "pages.jsonl").write_text(json.dumps({**json.loads(rows[0]), "image": "nope.png"}) + "\n")
    return {"data__train": str(folder), "data__strict": True}


def _empty_pairs(folder, split):
    folder.mkdir()
    (folder / "pairs.jsonl").write_text("\n")
    return {"stages__dpo__pairs": str(folder / "pairs.jsonl")}


def _identical_pair(folder, split):
    folder.mkdir()
    page = split.pages[0]
    row = {"id": page.id, "image": str(page.image), "chosen": "same", "rejected": "same"}
    (folder / "pairs.jsonl").write_text(json.dumps(row) + "\n")
    return {"stages__dpo__pairs": str(folder / "pairs.jsonl")}


def _stage_folder_without_pages(folder, split):
    folder.mkdir()
    return {"stages__structured__data": str(folder)}


@pytest.mark.parametrize("make, message", [
    (_broken_json, r"pages\.jsonl:2 \(id None\): invalid_json: the line is not JSON"),
    (_missing_image, r"pages\.jsonl:1 .*nope\.png"),
    (_empty_pairs, r"no usable preference pairs in .*pairs\.jsonl \(0 rows"),
    (_identical_pair, r"first skipped: .*pairs\.jsonl:1 \(id '\w+-\d+'\): identical_pair: 'chosen' and 'rejected' are"),
    (_stage_folder_without_pages, r"the folder holds no pages\.jsonl, saved dataset, parquet files, images or PDFs"),
])
def test_bad_data_is_one_error_naming_file_and_row_before_any_model_loads(splits, tmp_path, make, message):
    train, evaluation = splits
    changes = {"data__train": str(train.root), "data__eval": str(evaluation.root),
               "output_dir": str(tmp_path / "run")}
    changes.update(make(tmp_path / "bad", train))
    with pytest.raises(DataError, match=message):
        execute(validate(_values(**changes)))
    assert not (tmp_path / "run" / "00_base").exists(), "it failed before any model was loaded"
