"""The int4 kernel chooser: its decision on given timings, its refusals, its fallback off CUDA and without gemlite."""

from __future__ import annotations

import importlib.util
import time

import pytest
import torch

from dharma_train.models.int4_chooser import (PREFILL_ROWS, apply, choose_int4_backends, decide,
                                              fastest, gemlite_unavailable, measure_shape)
from dharma_train.models.quantized import int4_choices, int4_linear_from_codes, quantize_groups

GEMLITE_INSTALLED = importlib.util.find_spec("gemlite") is not None


def cpu_seconds(call, calls: int = 5) -> float:
    """Seconds per call on the CPU, after one warm-up call: the timer measure_shape takes, off CUDA."""
    call()
    start = time.perf_counter()
    for _ in range(calls):
        call()
    return (time.perf_counter() - start) / calls


def _layer(seed: int = 0, rows: int = 64, columns: int = 256):
    torch.manual_seed(seed)
    codes, scale = quantize_groups(torch.randn(rows, columns), 32)
    return int4_linear_from_codes(codes, scale, None, None, "cpu")


def test_the_fastest_decode_candidate_and_prefill_path_are_chosen_and_said():
    decode = {("tinygemm", False): 63e-6, ("tinygemm", True): 120e-6, ("gemlite", False): 41e-6,
              ("gemlite", True): 118e-6}
    decision = decide("2048->11008", 32, decode, {False: 0.9e-3, True: 0.3e-3}, {}, ["a note"])
    assert (decision.storage, decision.dense_decode, decision.dense_prefill) == ("gemlite", False, True)
    assert decision.reason.startswith("2048->11008 at 32 rows: gemlite 41.0 us (chosen), tinygemm 63.0 us, "
                                      "bf16-dequantized (gemlite layout) 118.0 us")
    assert f"prefill at {PREFILL_ROWS} rows: bf16-dequantized (gemlite layout) 0.30 ms (chosen), gemlite 0.90 ms" \
        in decision.reason
    assert decision.reason.endswith("; a note")


def test_dense_can_win_the_decode_and_the_kernel_the_prefill():
    decode = {("tinygemm", False): 180e-6, ("tinygemm", True): 90e-6}
    decision = decide("s", 64, decode, {False: 0.2e-3, True: 0.5e-3}, {("gemlite", False): "not built"}, [])
    assert (decision.storage, decision.dense_decode, decision.dense_prefill) == ("tinygemm", True, False)
    assert "gemlite refused: not built" in decision.reason


def test_a_tie_goes_to_the_candidate_listed_first():
    assert fastest({("tinygemm", False): 1.0, ("gemlite", False): 1.0}) == ("tinygemm", False)


def test_apply_moves_the_routing_onto_every_layer():
    layers = [_layer(1), _layer(2)]
    apply(layers, decide("s", 8, {("tinygemm", False): 1.0}, {True: 1.0, False: 2.0}, {}, []), 8)
    assert all(layer.dense_above == 8 and not layer.dense_rows for layer in layers)
    assert layers[0].runs_dense(9) and not layers[0].runs_dense(8)
    apply(layers, decide("s", 8, {("tinygemm", True): 1.0}, {False: 1.0, True: 2.0}, {}, []), 8)
    assert all(layer.dense_above is None and layer.dense_rows == {8} for layer in layers)
    assert layers[1].runs_dense(8) and not layers[1].runs_dense(9)
    assert layers[1].choice.startswith("s at 8 rows")


@pytest.mark.skipif(GEMLITE_INSTALLED, reason="gemlite is installed here")
def test_without_gemlite_the_chooser_says_how_to_install_it():
    assert gemlite_unavailable(torch.device("cpu")) == "gemlite not installed (pip install 'dharma_train[gemlite]')"


@pytest.mark.skipif(GEMLITE_INSTALLED, reason="gemlite is installed here")
def test_measuring_where_gemlite_cannot_be_built_refuses_it_and_times_the_rest():
    sample = _layer(3)
    decision = measure_shape(sample, 4, ["tinygemm", "gemlite"], cpu_seconds, "256->64", [])
    assert decision.storage == "tinygemm"
    assert "gemlite refused: ModuleNotFoundError" in decision.reason
    assert "tinygemm" in decision.reason and "bf16-dequantized (tinygemm layout)" in decision.reason


def test_a_dense_path_that_disagrees_with_the_kernel_is_refused():
    sample = _layer(4)
    sample.scale.mul_(3)  # the dense path reads these scales; the kernel keeps its own copy
    decision = measure_shape(sample, 4, ["tinygemm"], cpu_seconds, "256->64", [])
    assert (decision.storage, decision.dense_decode, decision.dense_prefill) == ("tinygemm", False, False)
    assert "bf16-dequantized (tinygemm layout) refused: output differs from the layer's kernel" in decision.reason


def test_off_cuda_nothing_is_measured_and_the_default_routing_stays():
    model = torch.nn.Sequential(_layer(5), torch.nn.ReLU())
    reasons = choose_int4_backends(model, 8)
    assert len(reasons) == 1 and reasons[0].startswith(
        "int4 kernels not measured on cpu: tinygemm at every row count")
    assert model[0].dense_above is None and not model[0].dense_rows, "the CPU kernel runs prefill too"
    assert int4_choices(model) == reasons, "the layers keep the reason, which the evaluation records"
    assert choose_int4_backends(torch.nn.Linear(4, 4), 8) == []
