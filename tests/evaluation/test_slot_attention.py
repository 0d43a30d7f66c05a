"""Slot attention's masked path against attention computed token by token over exactly the keys each may read."""

from __future__ import annotations

import math
from types import SimpleNamespace

import torch

from dharma_train.evaluation.slot_attention import StepLayout, flash_available, slot_attention

SLOTS, MAX_LEN, KV_HEADS, HEADS, DIM = 4, 12, 2, 4, 8


def _layout(keys, values, positions, live, chunks):
    """A step of SLOTS decode rows (parked ones write at the last position) and the given (slot, start, length)."""
    write_slot = [*range(SLOTS)] + [slot for slot, _, length in chunks for _ in range(length)]
    write_pos = [p if on else MAX_LEN - 1 for p, on in zip(positions, live)]
    write_pos += [start + i for _, start, length in chunks for i in range(length)]
    used = [p + 1 if on else 1 for p, on in zip(positions, live)]
    return StepLayout(keys=[keys], values=[values], write_slot=torch.tensor(write_slot),
                      write_pos=torch.tensor(write_pos), decode_used=torch.tensor(used, dtype=torch.int32),
                      decode_cu_q=torch.arange(SLOTS + 1, dtype=torch.int32),
                      decode_cu_k=torch.arange(SLOTS + 1, dtype=torch.int32) * MAX_LEN, flash=False,
                      chunks=tuple(chunks))


def _reference(query, keys, values, slot, visible):
    """One query [heads, dim] over keys[slot, :visible] with each key head shared by its query heads."""
    k = keys[slot, :visible].repeat_interleave(HEADS // KV_HEADS, dim=1)  # [visible, heads, dim]
    v = values[slot, :visible].repeat_interleave(HEADS // KV_HEADS, dim=1)
    weights = torch.softmax(torch.einsum("hd,khd->hk", query, k) / math.sqrt(DIM), dim=-1)
    return torch.einsum("hk,khd->hd", weights, v)


def test_decode_rows_and_prompt_chunks_each_read_only_their_own_keys():
    torch.manual_seed(0)
    keys, values = torch.randn(SLOTS, MAX_LEN, KV_HEADS, DIM), torch.randn(SLOTS, MAX_LEN, KV_HEADS, DIM)
    positions, live = [5, 0, 2, 7], [True, False, True, False]  # slots 1 and 3 parked; 3 takes a chunk
    chunks = [(1, 0, 3), (3, 4, 2)]  # slot 1's prompt from its start; slot 3's continues at position 4
    tokens = SLOTS + 5
    query, key, value = torch.randn(1, HEADS, tokens, DIM), torch.randn(1, KV_HEADS, tokens, DIM), \
        torch.randn(1, KV_HEADS, tokens, DIM)
    layout = _layout(keys, values, positions, live, chunks)
    output, _ = slot_attention(SimpleNamespace(layer_idx=0), query, key, value, layout)
    assert output.shape == (1, tokens, HEADS, DIM)
    new_keys, new_values = key[0].transpose(0, 1), value[0].transpose(0, 1)
    assert torch.equal(keys[layout.write_slot, layout.write_pos], new_keys)  # every token's key where it belongs
    assert torch.equal(values[layout.write_slot, layout.write_pos], new_values)
    expected = []
    for slot in range(SLOTS):
        expected.append(_reference(query[0, :, slot], keys, values, slot, positions[slot] + 1 if live[slot] else 1))
    row = SLOTS
    for slot, start, length in chunks:
        for i in range(length):
            expected.append(_reference(query[0, :, row], keys, values, slot, start + i + 1))
            row += 1
    assert torch.allclose(output[0], torch.stack(expected), atol=1e-5)


def test_a_step_of_decode_rows_alone_matches_too():
    torch.manual_seed(1)
    keys, values = torch.randn(SLOTS, MAX_LEN, KV_HEADS, DIM), torch.randn(SLOTS, MAX_LEN, KV_HEADS, DIM)
    positions, live = [3, 10, 0, 6], [True, True, True, True]
    query, key, value = torch.randn(1, HEADS, SLOTS, DIM), torch.randn(1, KV_HEADS, SLOTS, DIM), \
        torch.randn(1, KV_HEADS, SLOTS, DIM)
    output, _ = slot_attention(SimpleNamespace(layer_idx=0), query, key, value,
                               _layout(keys, values, positions, live, []))
    expected = [_reference(query[0, :, s], keys, values, s, positions[s] + 1) for s in range(SLOTS)]
    assert torch.allclose(output[0], torch.stack(expected), atol=1e-5)


def test_the_kernel_path_is_chosen_only_on_cuda_in_half_precision():
    assert not flash_available(torch.bfloat16, torch.device("cpu"))
    assert not flash_available(torch.float32, torch.device("cuda"))
