"""Seconds spent in each kind of work of the engine (vision, mixed steps, decode steps).

On a GPU the engine runs ahead of the device, so host clocks would measure enqueueing: there each span is a pair of
CUDA events, read once at the end of the run. Elsewhere a call's work is done when it returns: the host clock.
"""

from __future__ import annotations

import time
from collections import defaultdict

import torch


class StepTimer:
    """Spans of work by kind; `totals()` adds them up (on CUDA, after waiting for the last one)."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self.spans: list[tuple[str, object, object]] = []

    def start(self):
        """A mark at the start of a span: an event on the current CUDA stream, or the host clock."""
        if not self.cuda:
            return time.perf_counter()
        event = torch.cuda.Event(enable_timing=True)
        event.record()
        return event

    def stop(self, kind: str, started) -> None:
        """Close a span begun at `started` as `kind`."""
        self.spans.append((kind, started, self.start()))

    def totals(self) -> dict[str, float]:
        """Seconds by kind over every closed span."""
        seconds: dict[str, float] = defaultdict(float)
        for kind, started, ended in self.spans:
            if self.cuda:
                ended.synchronize()
                seconds[kind] += started.elapsed_time(ended) / 1000
            else:
                seconds[kind] += ended - started
        return dict(seconds)
