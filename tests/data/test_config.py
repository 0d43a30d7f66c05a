"""The data section: loader options are checked at start-up naming their key, and conf/data mirrors DataConfig."""

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from dharma_train.typed_config import typed
from dharma_train.config_files import config_dir
from dharma_train.data.config import DataConfig
from dharma_train.errors import ConfigError


def test_conf_data_yaml_lists_exactly_the_dataclass_defaults():
    yaml = OmegaConf.load(Path(config_dir()) / "data" / "synthetic.yaml")
    assert yaml == OmegaConf.structured(DataConfig)


def test_loader_options_are_typed():
    data = typed("data", DataConfig, {"train": "bench.parquet", "format": "parquet", "strict": True,
                                      "max_pixels": 1_000_000, "split": {"eval": 0.1, "test": 0.05, "seed": 7}})
    assert (data.format, data.strict, data.max_pixels, data.split.eval, data.split.seed) == \
           ("parquet", True, 1_000_000, 0.1, 7)


@pytest.mark.parametrize("values, message", [
    ({"format": "csv"}, r"data\.format must be one of"),
    ({"max_pixels": 10}, r"data\.max_pixels must be at least 784"),
    ({"max_pixels": "many"}, r"data\.max_pixels"),
    ({"strict": "maybe"}, r"data\.strict"),
    ({"pdf_dpi": 10}, r"data\.pdf_dpi must be between 36 and 1200, got 10"),
    ({"max_skipped_share": 1.5}, r"data\.max_skipped_share must be a share in \[0, 1\]"),
    ({"split": {"eval": 0.1}}, r"data\.split\.eval carves pages out of data\.train, which is not set"),
    ({"train": "a", "split": {"eval": 1.0}}, r"data\.split\.eval must be a fraction in \[0, 1\)"),
    ({"train": "a", "split": {"eval": -0.1}}, r"data\.split\.eval must be a fraction"),
    ({"train": "a", "eval": "b", "split": {"eval": 0.1}}, r"data\.split\.eval and data\.eval both give"),
    ({"train": "a", "split": {"eval": 0.5, "test": 0.5}}, r"must leave pages for training"),
    ({"split": {"validation": 0.1}}, r"data\.split\.validation"),
])
def test_bad_loader_options_name_their_key(values, message):
    with pytest.raises(ConfigError, match=message):
        typed("data", DataConfig, values)
