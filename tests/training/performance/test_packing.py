"""Padding-free training computes the same loss and gradients as the padded stock model (CPU, fp32, tiny model)."""

import copy

import pytest
import torch

from dharma_train.models.config import ModelConfig
from dharma_train.models.loading import load_model, load_processor
from dharma_train.training.performance.packing import ATTENTION, _boundaries, use_padding_free


@pytest.fixture(scope="module")
def batch(tiny_artifact, pages):
    """Four pages with different answer lengths, padded by TRL's own collator (the batch the stages train on)."""
    from trl.trainer.sft_trainer import DataCollatorForVisionLanguageModeling

    from dharma_train.data.conversation import sft_dataset

    processor = load_processor(tiny_artifact.path)
    rows = sft_dataset(pages[0], "structured")
    collate = DataCollatorForVisionLanguageModeling(processor, completion_only_loss=True)
    batch = collate([rows[i] for i in range(4)])
    lengths = batch["attention_mask"].sum(-1)
    assert lengths.min() < lengths.max(), "the batch must hold padding for the test to mean anything"
    return batch


def _loss_and_grads(model, batch, fused_head: bool):
    model.zero_grad()
    if fused_head:  # TRL's chunked LM head, as SFTTrainer and DPOTrainer call it
        loss = model(**batch, fused_lm_head=True).loss
    else:
        loss = model(**batch).loss
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("fused_head", [False, True])
def test_packed_loss_and_gradients_match_the_padded_model(tiny_artifact, batch, fused_head):
    from trl.trainer.utils import add_fused_lm_head

    torch.manual_seed(0)
    stock = load_model(tiny_artifact, settings=ModelConfig(vision_attention="stock")).train()
    packed = copy.deepcopy(stock)
    assert use_padding_free(packed) == 1
    assert use_padding_free(packed) == 0  # idempotent
    if fused_head:
        add_fused_lm_head(packed)
    loss, grads = _loss_and_grads(stock, batch, fused_head=False)
    packed_loss, packed_grads = _loss_and_grads(packed, batch, fused_head)
    torch.testing.assert_close(packed_loss, loss, rtol=1e-5, atol=1e-6)
    assert packed_grads.keys() == grads.keys()
    for name, grad in grads.items():
        torch.testing.assert_close(packed_grads[name], grad, rtol=1e-4, atol=1e-6, msg=name)


def test_packed_hidden_states_match_at_every_real_token_and_are_zero_on_pad(tiny_artifact, batch):
    stock = load_model(tiny_artifact).eval()
    packed = copy.deepcopy(stock)
    use_padding_free(packed)
    packed.train()  # training mode packs even if a caller leaves use_cache on
    with torch.no_grad():
        reference = stock.model(**batch).last_hidden_state
        hidden = packed.model(**batch).last_hidden_state
    keep = batch["attention_mask"].bool()
    torch.testing.assert_close(hidden[keep], reference[keep], rtol=1e-5, atol=1e-5)
    assert hidden[~keep].abs().max() == 0


def test_generation_with_a_cache_takes_the_stock_path(tiny_artifact, batch):
    stock = load_model(tiny_artifact).eval()
    packed = copy.deepcopy(stock)
    use_padding_free(packed)
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    with torch.no_grad():
        a = stock.generate(**inputs, max_new_tokens=4, do_sample=False)
        b = packed.generate(**inputs, max_new_tokens=4, do_sample=False)
    assert torch.equal(a, b)


def test_saved_config_keeps_the_stock_attention(tiny_artifact, tmp_path):
    import json

    model = load_model(tiny_artifact)
    use_padding_free(model)
    model.save_pretrained(tmp_path)
    assert ATTENTION not in (tmp_path / "config.json").read_text()
    assert json.loads((tmp_path / "config.json").read_text())["model_type"] == "qwen2_5_vl"


def test_sample_boundaries_come_from_positions_that_restart_at_zero():
    cu_seqlens, longest = _boundaries(torch.tensor([[0, 1, 2, 0, 1, 0, 1, 2, 3]]))
    assert cu_seqlens.tolist() == [0, 3, 5, 9] and longest == 4
    assert _boundaries(torch.tensor([[0, 1, 2], [0, 1, 2]])) == (None, None)


def test_dpo_per_token_log_probs_match_on_a_preference_batch(tiny_artifact, pages):
    """DPO's batch is [chosen; rejected] with left-padded prompts: the packed model scores every token the same."""
    from trl.trainer.dpo_trainer import DataCollatorForVisionPreference
    from trl.trainer.utils import add_fused_lm_head

    from dharma_train.data.conversation import dpo_dataset
    from dharma_train.data.pairs import loop_pairs

    processor = load_processor(tiny_artifact.path)
    rows = dpo_dataset(loop_pairs(pages[0], "structured")[:3], "structured")
    batch = DataCollatorForVisionPreference(processor)([rows[i] for i in range(3)])
    labels = batch["input_ids"].masked_fill(batch.pop("completion_mask") == 0, -100)
    stock = load_model(tiny_artifact).eval()
    packed = copy.deepcopy(stock)
    use_padding_free(packed)
    scores = []
    for model in (stock, packed):
        add_fused_lm_head(model)
        with torch.no_grad():
            scores.append(model(**batch, labels=labels, use_cache=False, fused_lm_head=True).log_probs)
    assert (batch["attention_mask"] == 0).any()
    torch.testing.assert_close(scores[1], scores[0], rtol=1e-5, atol=1e-5)
