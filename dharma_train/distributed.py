"""The processes of one run: which one this is, how they split pages, and how they pool results.

A run started by `torchrun` or `accelerate launch` has one process per GPU (or per CPU worker): every process
runs the same pipeline, trains its share of each batch, generates on its share of the pages, and rank 0 alone
writes files. Started plainly (`python -m dharma_train`) the run has one process and every helper here is the
identity. Communication goes through accelerate's PartialState, the same state TRL's trainers use.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Callable, Sequence, TypeVar

import torch.distributed as dist

T = TypeVar("T")


def launched() -> bool:
    """True when a launcher (torchrun, accelerate launch, srun + torchrun) started this process."""
    return "WORLD_SIZE" in os.environ and "RANK" in os.environ


def start(cpu: bool) -> None:
    """Join the run's process group (gloo on the CPU, NCCL on GPUs, each process on its own GPU); no-op alone."""
    if launched():
        from accelerate import PartialState

        PartialState(cpu=cpu)


def finish() -> None:
    """Leave the process group at the end of a launched run: a gloo group still alive at interpreter exit can abort
    a process ("terminate called without an active exception") after its work is done."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def world_size() -> int:
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    return int(os.environ.get("RANK", "0"))


def is_main() -> bool:
    """The one process that writes summaries, reports, plots, pairs and saved models."""
    return rank() == 0


def shard(items: Sequence[T], rank_: int | None = None, world: int | None = None) -> list[T]:
    """This process's contiguous share; rank order concatenated gives back every item once, in order.

    The arithmetic of accelerate's PartialState.split_between_processes (the first `len % world` ranks take one
    more), written out so it takes rank and world explicitly and needs no process group to test.
    """
    rank_ = rank() if rank_ is None else rank_
    world = world_size() if world is None else world
    base, extra = divmod(len(items), world)
    start_index = rank_ * base + min(rank_, extra)
    return list(items[start_index:start_index + base + (1 if rank_ < extra else 0)])


def gather(items: list[T]) -> list[T]:
    """Every process's list, concatenated in rank order, on every process."""
    if world_size() == 1:
        return list(items)
    from accelerate.utils import gather_object

    return gather_object(list(items))


def broadcast(value: T) -> T:
    """Rank 0's value on every process (also a synchronization point)."""
    if world_size() == 1:
        return value
    from accelerate.utils import broadcast_object_list

    return broadcast_object_list([value])[0]


def barrier() -> None:
    if world_size() > 1:
        from accelerate import PartialState

        PartialState().wait_for_everyone()


def on_main(function: Callable[..., T], *args, **kwargs) -> T:
    """Run `function` on rank 0 alone; the others wait and receive its result (paths, page sets, artifacts).

    An exception on rank 0 is raised on every process, so none is left waiting for a result that never comes.
    """
    if world_size() == 1:
        return function(*args, **kwargs)
    outcome: tuple[bool, object] | None = None
    if is_main():
        try:
            outcome = (True, function(*args, **kwargs))
        except Exception as error:  # sent to the other ranks, then raised here too
            outcome = (False, error)
    succeeded, value = broadcast(outcome)
    if not succeeded:
        raise value
    return value


@contextmanager
def hidden_process_group() -> Iterator[None]:
    """For rank 0 working alone inside `on_main`: libraries that turn collective whenever a process group exists
    (llm-compressor's calibration all-reduces its statistics) see none until the block ends, instead of waiting
    for ranks that are not there."""
    if not dist.is_available() or not dist.is_initialized():
        yield
        return
    initialized = dist.is_initialized
    dist.is_initialized = lambda: False
    try:
        yield
    finally:
        dist.is_initialized = initialized
