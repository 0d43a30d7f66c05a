"""Splitting pages over processes and pooling results: one-process behaviour here, two real processes in
tests/test_distributed_processes.py."""

import pytest

from dharma_train import distributed
from dharma_train.__main__ import _keep_hydra_files_to_rank_zero


@pytest.mark.parametrize("world", [1, 2, 3, 4, 8])
@pytest.mark.parametrize("count", [0, 1, 2, 5, 7, 16, 17])
def test_shards_cover_every_item_exactly_once_in_order(count, world):
    items = [f"page-{i}" for i in range(count)]
    shards = [distributed.shard(items, rank, world) for rank in range(world)]
    assert [item for part in shards for item in part] == items  # none lost, none twice, order kept
    sizes = [len(part) for part in shards]
    assert max(sizes) - min(sizes) <= 1


def test_shards_match_accelerates_split():
    """The same split accelerate's PartialState.split_between_processes makes (first ranks take the extras)."""
    assert [distributed.shard(list(range(7)), rank, 3) for rank in range(3)] == [[0, 1, 2], [3, 4], [5, 6]]


def test_one_process_helpers_are_the_identity(monkeypatch):
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    assert not distributed.launched()
    assert (distributed.rank(), distributed.world_size(), distributed.is_main()) == (0, 1, True)
    assert distributed.shard([1, 2, 3]) == [1, 2, 3]
    assert distributed.gather([1, 2]) == [1, 2]
    assert distributed.broadcast("runs/x") == "runs/x"
    assert distributed.on_main(lambda a, b: a + b, 2, b=3) == 5
    distributed.barrier()


def test_only_rank_zero_writes_hydra_files_into_the_run_folder(monkeypatch):
    monkeypatch.setenv("RANK", "0")
    assert _keep_hydra_files_to_rank_zero(["prog", "recipe=tiny"]) == ["prog", "recipe=tiny"]
    monkeypatch.setenv("RANK", "1")
    argv = _keep_hydra_files_to_rank_zero(["prog", "recipe=tiny"])
    assert argv[:2] == ["prog", "recipe=tiny"] and "hydra.output_subdir=null" in argv
    assert any(a.startswith("hydra.run.dir=") and "rank1" in a for a in argv)
