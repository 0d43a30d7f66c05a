"""Shared fixtures: no test touches the network, and the tiny model is built once per session in a temp cache."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ.setdefault("WANDB_MODE", "disabled")

import pytest  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def tiny_cache(tmp_path_factory):
    """Keep built tiny models out of the user's cache."""
    cache = tmp_path_factory.mktemp("dharma_cache")
    os.environ["DHARMA_TRAIN_CACHE"] = str(cache)
    return cache


@pytest.fixture(scope="session")
def tiny_artifact(tiny_cache):
    from dharma_train import tiny_model

    return tiny_model()


@pytest.fixture(scope="session")
def pages(tmp_path_factory):
    """A small train/eval split of synthetic pages shared by the stage tests."""
    from dharma_train.data.synthetic.generate import generate_splits

    return generate_splits(tmp_path_factory.mktemp("pages"), n_train=16, n_eval=4, seed=1)
