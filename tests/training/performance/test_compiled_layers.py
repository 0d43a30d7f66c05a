"""Compiled layers that recompute inside their graph: eager's losses and gradients, and eager's saved activations."""

import copy

import pytest
import torch

from dharma_train.models.loading import load_model
from dharma_train.training.performance.compiled_layers import compile_layers
from dharma_train.training.performance.kernels import use_fused_kernels
from dharma_train.training.performance.recompute import apply_policy

STEPS = 3


def _batches(vocab: int) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return [torch.randint(10, vocab - 10, (2, 24 + 8 * step), generator=generator) for step in range(STEPS)]


def _saved_activation_bytes(model, ids) -> tuple[torch.Tensor, int]:
    """The loss, and the bytes autograd keeps for backward that are not parameters: what checkpointing shrinks. A
    checkpointed eager region keeps its inputs outside these hooks, a compiled one through them (a few KiB here)."""
    weights = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen = {}

    def pack(tensor):
        pointer = tensor.untyped_storage().data_ptr()
        if pointer not in weights:
            seen[pointer] = tensor.untyped_storage().nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        loss = model(input_ids=ids, labels=ids, use_cache=False).loss
    return loss, sum(seen.values())


def _train(model, batches) -> tuple[list[float], list[dict], list[int]]:
    """Losses, trained gradients and saved activation bytes of each AdamW step."""
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    losses, gradients, saved = [], [], []
    for ids in batches:
        loss, held = _saved_activation_bytes(model, ids)
        loss.backward()
        losses.append(float(loss))
        gradients.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
        saved.append(held)
        optimizer.step()
        optimizer.zero_grad()
    return losses, gradients, saved


@pytest.mark.slow
@pytest.mark.parametrize("method, policy", [("full", "every_2"), ("lora", "all")])
def test_recomputed_compiled_layers_train_like_eager_and_keep_eagers_activations(tiny_artifact, method, policy):
    """every_2: decoder layer 0 recomputes inside its compiled graph, layer 1 is compiled as it is (LoRA: all
    recompute, one compiled graph less to wait for); the batches are text, the vision blocks do not run. Against eager with the same policy through transformers'
    checkpointing: same losses and gradients for 3 AdamW steps, and about the same activation bytes kept, well under
    what recomputing nothing keeps."""
    from peft import get_peft_model

    from dharma_train.training.config import LoraSettings
    from dharma_train.training.model_setup import lora_config

    torch.manual_seed(0)
    base = load_model(tiny_artifact).train()
    if method == "lora":
        base = get_peft_model(base, lora_config(LoraSettings()))
    batches = _batches(base.config.text_config.vocab_size)
    nothing_recomputed = copy.deepcopy(base)
    eager, compiled = copy.deepcopy(base), copy.deepcopy(base)
    apply_policy(eager, policy)
    apply_policy(compiled, policy)  # as the probe leaves it; compile_layers takes the checkpointing inside
    assert compile_layers(compiled, policy) == {"every_2": 3, "all": 2}[policy]  # recomputed vision blocks: eager
    eager_losses, eager_gradients, eager_saved = _train(eager, batches)
    losses, gradients, saved = _train(compiled, batches)
    _, _, off_saved = _train(nothing_recomputed, batches[:1])

    assert losses == pytest.approx(eager_losses, rel=1e-5)
    for step in range(STEPS):
        assert gradients[step].keys() == eager_gradients[step].keys()
        for name, gradient in gradients[step].items():
            reference = eager_gradients[step][name]  # fp32 sums in another order, then Adam: noise, not 1e-4
            assert float((gradient - reference).norm()) <= 1e-4 * float(reference.norm()), (name, step)
    assert saved[0] <= 1.2 * eager_saved[0], "the compiled layer keeps more than eager checkpointing"
    assert saved[0] < 0.8 * off_saved[0], "the compiled layers did not recompute"


def test_compiling_turns_off_the_outer_checkpoint_and_restores_the_stock_kernels(tiny_artifact):
    """Lazily compiled (nothing runs here): recomputed decoder layers keep their eager forward behind a checkpoint,
    no compiled layer keeps transformers' flag or a liger call, a recomputed vision block stays eager with both, and
    modules outside the layers keep liger's kernels."""
    model = load_model(tiny_artifact)
    patched = use_fused_kernels(model)
    apply_policy(model, "keep_2")  # recomputes layer 0 of each stack
    vision, text = model.model.visual.blocks, model.model.language_model.layers
    assert compile_layers(model, "keep_2") == len(vision) + len(text) - 1
    assert [layer._compiled_call_impl is not None for layer in (*vision, *text)] == [False, True, True, True]
    assert [layer.gradient_checkpointing for layer in (*vision, *text)] == [True, False, False, False]
    assert [hasattr(layer, "_dharma_eager_forward") for layer in text] == [True, False]
    fused = [layer for layer in (*vision, *text) if any(hasattr(m, "_dharma_liger_call") for m in layer.modules())]
    outside = [m for m in model.modules() if hasattr(m, "_dharma_liger_call")]
    assert fused == [vision[0]] and len(outside) < patched


def test_a_reference_forward_toggle_leaves_compiled_layers_off_transformers_wrapper(tiny_artifact):
    """TRL's DPO disables checkpointing around each reference forward and enables it again after: the compiled
    layers (recomputing inside their graph or not at all) stay off the outer wrapper, the eager vision block that
    recomputes stays on it."""
    from trl.models.utils import disable_gradient_checkpointing

    model = load_model(tiny_artifact)
    apply_policy(model, "keep_2")
    compile_layers(model, "keep_2")
    layers = [*model.model.visual.blocks, *model.model.language_model.layers]
    before = [layer.gradient_checkpointing for layer in layers]
    assert before == [True, False, False, False]
    with disable_gradient_checkpointing(model, None):
        pass
    assert [layer.gradient_checkpointing for layer in layers] == before


def _dpo_trainer(tiny_artifact, pages, folder, policy: str, compiled: bool):
    """TRL's DPOTrainer as the DPO stage builds it for full fine-tuning: an explicit frozen reference, loop-shaped
    pairs; the policy set as the probe leaves it, then the trained model and the reference compiled (or not)."""
    from trl import DPOConfig, DPOTrainer

    from dharma_train.data.conversation import dpo_dataset
    from dharma_train.data.pairs import loop_pairs
    from dharma_train.models.loading import load_processor

    torch.manual_seed(0)
    network, reference = load_model(tiny_artifact).train(), load_model(tiny_artifact)
    args = DPOConfig(output_dir=str(folder), per_device_train_batch_size=2, max_steps=STEPS, learning_rate=1e-3,
                     lr_scheduler_type="constant", use_cpu=True, report_to=[], logging_steps=1, save_strategy="no",
                     seed=0, data_seed=0, max_length=None, precompute_ref_log_probs=False)
    trainer = DPOTrainer(model=network, ref_model=reference, args=args,
                         train_dataset=dpo_dataset(loop_pairs(pages[0], "structured")[:2 * STEPS], "structured"),
                         processing_class=load_processor(tiny_artifact.processor_location))
    apply_policy(trainer.model, policy)
    if compiled:
        compile_layers(trainer.model, policy)
        compile_layers(reference, "off")
    return trainer


@pytest.mark.slow
def test_dpo_trains_compiled_like_eager_and_keeps_its_policy_through_the_reference_forwards(tiny_artifact, pages,
                                                                                          tmp_path):
    """every_2 on the tiny model: vision block 0 recomputes eagerly (so TRL toggles checkpointing around each
    reference forward), decoder layer 0 inside its compiled graph; the reference's layers are compiled too. Against
    the eager twin over 3 steps, and afterwards the layers still carry the policy (the toggle would otherwise have
    put every layer, the compiled ones included, under transformers' wrapper).

    The bounds are fp32 noise as DPO amplifies it. Eager's policy and reference forwards are bit for bit the same at
    step 1 (loss log 2); compiled, the reference's kernels differ from eager's by ~5e-6 of a sequence's summed
    log-prob (~1,000 nats here, so ~0.01 nat), and DPO's margin is a difference of such differences: measured, the
    policy's log-probs within 5.5e-5 of eager's, the losses within 1.1e-3 (0.69243 against log 2 at step 1), the
    3 steps' whole update within 2.8e-2 (L2)."""
    from torch._dynamo.utils import counters

    eager = _dpo_trainer(tiny_artifact, pages, tmp_path / "eager", "every_2", compiled=False)
    compiled = _dpo_trainer(tiny_artifact, pages, tmp_path / "compiled", "every_2", compiled=True)
    graphs = counters["stats"]["unique_graphs"]
    start = {name: parameter.detach().clone() for name, parameter in eager.model.named_parameters()}
    eager.train()
    compiled.train()
    assert counters["stats"]["unique_graphs"] > graphs, "nothing was compiled"

    def logged(trainer, key):
        return [entry[key] for entry in trainer.state.log_history if key in entry]

    def update(trainer):
        return torch.cat([(p.detach() - start[name]).flatten() for name, p in trainer.model.named_parameters()])

    weights = float((update(compiled) - update(eager)).norm() / update(eager).norm())
    logps = max(abs(a / b - 1) for key in ("logps/chosen", "logps/rejected")
                for a, b in zip(logged(compiled, key), logged(eager, key)))
    losses = max(abs(a - b) for a, b in zip(logged(compiled, "loss"), logged(eager, "loss")))
    numbers = f"update {weights:.1e}, log-probs {logps:.1e}, losses {losses:.1e}: {logged(compiled, 'loss')} " \
              f"against {logged(eager, 'loss')}" + "".join(
                  f"; {key} {logged(compiled, key)} against {logged(eager, key)}"
                  for key in ("rewards/chosen", "rewards/rejected", "logps/chosen", "logps/rejected"))
    assert len(logged(compiled, "loss")) == STEPS
    assert weights <= 5e-2 and logps <= 2e-4 and losses <= 3e-3, numbers
    model = compiled.model
    layers = [*model.model.visual.blocks, *model.model.language_model.layers]
    assert [layer.gradient_checkpointing for layer in layers] == [True, False, False, False]
    assert [m.gradient_checkpointing for m in (*eager.model.model.visual.blocks,
                                                *eager.model.model.language_model.layers)] == [True, False] * 2
