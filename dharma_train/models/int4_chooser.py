"""Which kernel each int4 layer shape runs on, chosen by measuring at the start of generation on CUDA: at the decode
step's row count, the int4 kernels (tinygemm; gemlite where installed) and a bf16 matmul on the weight dequantized
per call, each on its own storage layout; at a prefill-sized row count, the chosen storage's kernel against the
dequantized matmul. No kernel wins everywhere (tinygemm is fast at one row and slow from eight up), so the choice is
measured on the machine, per shape, logged with the timings that made it and kept on the layers, whose
`decode_backend` the report and model card print. Off CUDA nothing is measured and the layers keep their default
routing: the int4 kernel at every row count (the CPU layout gives its codes back only through the kernel itself).
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
from collections.abc import Callable
from dataclasses import dataclass

import torch

from dharma_train.models.int4_layouts import dequantize
from dharma_train.models.int4_storage import GEMLITE_INSTALL, STORAGES, TinyGemmStorage
from dharma_train.models.quantized import Int4Linear

log = logging.getLogger(__name__)

PREFILL_ROWS = 1024  # a forward this size stands for prefill (a page's prompt is about 1,600 tokens)
TOLERANCE = 2e-2  # relative error against the layer's own kernel beyond which a candidate is refused
Candidate = tuple[str, bool]  # (storage name, dense: a bf16 matmul on the dequantized weight)
_DECISIONS: dict[tuple, "Decision"] = {}  # per process: the same shapes and rows are not measured twice


@dataclass(frozen=True)
class Decision:
    """How one layer shape runs: its storage, whether its decode rows and its prefill run dense, and why."""

    storage: str
    dense_decode: bool
    dense_prefill: bool
    reason: str


def label(candidate: Candidate) -> str:
    """'gemlite', 'bf16-dequantized (tinygemm layout)'..."""
    storage, dense = candidate
    return f"bf16-dequantized ({storage} layout)" if dense else storage


def fastest(timings: dict[Candidate, float]) -> Candidate:
    """The candidate with the lowest time; on a tie, the one listed first."""
    return min(timings, key=lambda candidate: timings[candidate])


def decide(shape: str, rows: int, decode: dict[Candidate, float], prefill: dict[bool, float],
           refused: dict[Candidate, str], notes: list[str]) -> Decision:
    """The decision from measured seconds per call: the fastest decode candidate, and dense prefill when the
    dequantized matmul beat the chosen storage's kernel at PREFILL_ROWS (prefill: {dense: seconds})."""
    storage, dense = fastest(decode)
    dense_prefill = fastest({flag: prefill[flag] for flag in (True, False) if flag in prefill}) if prefill else False
    decode_text = ", ".join(f"{label(c)} {decode[c] * 1e6:.1f} us" + (" (chosen)" if c == (storage, dense) else "")
                            for c in sorted(decode, key=decode.get))
    prefill_text = ", ".join(f"{label((storage, flag))} {prefill[flag] * 1e3:.2f} ms"
                             + (" (chosen)" if flag == dense_prefill else "")
                             for flag in sorted(prefill, key=prefill.get))
    parts = [f"{shape} at {rows} rows: {decode_text}", f"prefill at {PREFILL_ROWS} rows: {prefill_text}"]
    parts += [f"{label(c)} refused: {why}" for c, why in refused.items()] + notes
    return Decision(storage, dense, dense_prefill, "; ".join(parts))


def gemlite_unavailable(device: torch.device) -> str | None:
    """Why gemlite cannot run here, or None when it can."""
    if importlib.util.find_spec("gemlite") is None:
        return f"gemlite not installed ({GEMLITE_INSTALL})"
    if device.type != "cuda":
        return f"gemlite needs CUDA (this is {device.type})"
    try:
        importlib.import_module("gemlite")  # its import sets up Triton and loads its tuned configs
    except Exception as error:  # noqa: BLE001 - any import failure means the same: not a candidate
        return f"gemlite failed to import ({type(error).__name__}: {error})"
    return None


def choose_int4_backends(model, rows: int) -> list[str]:
    """Measure and set every Int4Linear's kernels for a generation whose decode steps have `rows` rows; the
    reasons, one per layer shape (also logged). Nothing to do without int4 layers; nothing measured off CUDA."""
    layers = [module for module in model.modules() if isinstance(module, Int4Linear)]
    if not layers:
        return []
    device = layers[0].scale.device
    unavailable = gemlite_unavailable(device)
    if device.type != "cuda":
        reason = (f"int4 kernels not measured on {device.type}: {layers[0].storage.name} at every row count; "
                  f"{unavailable}")
        log.info(reason)
        for layer in layers:
            layer.choice = reason
        return [reason]
    storages = [TinyGemmStorage.name] + (["gemlite"] if unavailable is None else [])
    notes = [unavailable] if unavailable else []
    by_shape: dict[tuple, list[Int4Linear]] = {}
    for layer in layers:
        by_shape.setdefault((layer.in_features, layer.out_features, layer.group_size), []).append(layer)
    reasons = []
    for (inputs, outputs, group), group_layers in by_shape.items():
        key = (torch.cuda.get_device_name(device), inputs, outputs, group, rows, tuple(storages))
        if key not in _DECISIONS:
            shape = f"{inputs}->{outputs} (groups of {group}, {len(group_layers)} layers)"
            _DECISIONS[key] = measure_shape(group_layers[0], rows, storages, cuda_seconds, shape, notes)
        apply(group_layers, _DECISIONS[key], rows)
        log.info("int4 kernels: %s", _DECISIONS[key].reason)
        reasons.append(_DECISIONS[key].reason)
    return reasons


def apply(layers: list[Int4Linear], decision: Decision, rows: int) -> None:
    """Put the decision on the layers: their storage (moved if it changed) and their routing by row count."""
    for layer in layers:
        layer.use_storage(decision.storage)
        layer.dense_rows = frozenset({rows}) if decision.dense_decode else frozenset()
        layer.dense_above = rows if decision.dense_prefill else None
        layer.choice = decision.reason


def measure_shape(sample: Int4Linear, rows: int, storages: list[str], timer: Callable, shape: str,
                  notes: list[str]) -> Decision:
    """Time every candidate on `sample`'s codes at `rows` rows, then the chosen storage at PREFILL_ROWS; a
    candidate whose output differs from the layer's own kernel (beyond TOLERANCE) is refused, not timed."""
    codes = sample.storage.codes()
    built, refused = {sample.storage.name: sample.storage}, {}
    for name in storages:
        if name not in built:
            try:
                built[name] = STORAGES[name](codes, sample.scale, sample.zero_code, sample.group_size)
            except Exception as error:  # noqa: BLE001 - a storage that cannot be built is refused, with why
                refused[(name, False)] = f"{type(error).__name__}: {error}"
    decode = _timed(sample, built, rows, timer, refused)
    storage = fastest(decode)[0]
    prefill = {dense: seconds for (_, dense), seconds in
               _timed(sample, {storage: built[storage]}, PREFILL_ROWS, timer, refused).items()}
    return decide(shape, rows, decode, prefill, refused, notes)


def _timed(sample: Int4Linear, built: dict, rows: int, timer: Callable, refused: dict) -> dict[Candidate, float]:
    """Seconds per call of each storage's kernel and dense path at `rows` rows, checked against sample's kernel."""
    x = torch.randn(rows, sample.in_features, dtype=sample.compute_dtype, device=sample.scale.device)
    reference = sample.storage.matmul(x).float()
    timings = {}
    for name, storage in built.items():
        for dense in (False, True):
            def call(storage=storage, dense=dense):
                if dense:
                    weight = dequantize(storage.codes(), sample.scale, sample.zero_code, sample.compute_dtype)
                    return torch.nn.functional.linear(x, weight)
                return storage.matmul(x)

            error = float((call().float() - reference).norm() / reference.norm().clamp(min=1e-12))
            if error > TOLERANCE:
                refused[(name, dense)] = f"output differs from the layer's kernel by {error:.1e} (relative)"
                continue
            timings[(name, dense)] = timer(call)
    return timings


def cuda_seconds(call: Callable, calls: int = 20, replays: int = 5) -> float:
    """Seconds per call as the engine runs a decode step: `calls` calls captured in a CUDA graph, replayed (eager
    if the call cannot be captured), after warm-up calls (Triton autotuning happens there)."""
    stream = torch.cuda.Stream()  # warm-up on a side stream, as graph capture asks
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(3):
            call()
    torch.cuda.current_stream().wait_stream(stream)
    torch.cuda.synchronize()
    run = None
    try:
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            for _ in range(calls):
                call()
        run = graph.replay
    except RuntimeError as error:
        log.warning("int4 chooser: timing without a CUDA graph (%s)", error)
    if run is None:
        def run():
            for _ in range(calls):
                call()
    run()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(replays):
        run()
    end.record()
    end.synchronize()
    return start.elapsed_time(end) / 1e3 / (calls * replays)
