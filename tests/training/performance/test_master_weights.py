"""Master weights in the optimizer: bf16 parameters, fp32 copies stepped by the Trainer's own optimizer."""

import pytest
import torch

from dharma_train.training.performance.master_weights import MasterWeightsOptimizer, keep_masters_in_optimizer


def _pair(seed: int = 0):
    """A bf16 parameter and an fp32 one holding the same values."""
    generator = torch.Generator().manual_seed(seed)
    values = torch.randn(64, 32, generator=generator).to(torch.bfloat16)
    return torch.nn.Parameter(values.clone()), torch.nn.Parameter(values.float())


def test_the_copies_take_exactly_adamws_fp32_steps_and_the_parameters_their_rounding():
    """Same gradients, same schedule: the fp32 copies equal plain fp32 AdamW bit for bit, with weight decay on one
    group and off the other, and each bf16 parameter is its copy rounded."""
    (decayed, decayed_reference), (plain, plain_reference) = _pair(0), _pair(1)
    ours = MasterWeightsOptimizer([{"params": [decayed], "weight_decay": 0.1}, {"params": [plain], "weight_decay": 0}],
                                  torch.optim.AdamW, lr=1e-3)
    reference = torch.optim.AdamW([{"params": [decayed_reference], "weight_decay": 0.1},
                                   {"params": [plain_reference], "weight_decay": 0}], lr=1e-3)
    schedules = [torch.optim.lr_scheduler.LambdaLR(o, lambda step: 0.5**step) for o in (ours, reference)]
    generator = torch.Generator().manual_seed(2)
    for _ in range(5):
        for half, full in ((decayed, decayed_reference), (plain, plain_reference)):
            gradient = torch.randn(64, 32, generator=generator).to(torch.bfloat16)
            half.grad, full.grad = gradient, gradient.float()
        for optimizer, schedule in zip((ours, reference), schedules):
            optimizer.step()
            schedule.step()
        ours.zero_grad()
    assert ours.param_groups[0]["lr"] == reference.param_groups[0]["lr"] == 1e-3 * 0.5**5
    for half, master, full in zip((decayed, plain), ours.masters, (decayed_reference, plain_reference)):
        assert torch.equal(master, full.detach())
        assert half.dtype == torch.bfloat16 and torch.equal(half.detach(), master.to(torch.bfloat16))
    assert decayed.grad is None and all(master.grad is None for master in ours.masters)


def test_updates_below_a_bf16_step_add_up_in_the_copy_and_reach_the_weight():
    """lr 1e-4 on weights of 1.0, whose bf16 neighbours are 2^-7 apart: plain AdamW on bf16 weights rounds every
    update away; the fp32 copy gathers them until the bf16 weight moves a whole step."""
    ours, pure = torch.nn.Parameter(torch.ones(8, dtype=torch.bfloat16)), torch.nn.Parameter(
        torch.ones(8, dtype=torch.bfloat16))
    optimizers = [MasterWeightsOptimizer([ours], lr=1e-4), torch.optim.AdamW([pure], lr=1e-4, weight_decay=0)]
    optimizers[0].param_groups[0]["weight_decay"] = 0
    for _ in range(64):  # 64 x 1e-4 past half a step (2^-8): the copy rounds to the next bf16 value down
        for parameter, optimizer in zip((ours, pure), optimizers):
            parameter.grad = torch.ones_like(parameter)
            optimizer.step()
    assert torch.equal(pure.detach(), torch.ones(8, dtype=torch.bfloat16)), "pure bf16 kept no update"
    assert float(optimizers[0].masters[0][0]) == pytest.approx(1 - 64e-4, rel=1e-3)
    assert torch.equal(ours.detach(), torch.full((8,), 1 - 2**-7, dtype=torch.bfloat16))


def test_a_saved_state_restores_the_fp32_copies_and_the_steps_after_it(tmp_path):
    """torch.save/torch.load as the Trainer does (weights only): a fresh optimizer over the initial parameters,
    loaded, continues exactly as the one that never stopped."""
    generator = torch.Generator().manual_seed(3)
    gradients = [torch.randn(64, 32, generator=generator).to(torch.bfloat16) for _ in range(4)]
    parameter, _ = _pair()
    start = parameter.detach().clone()
    optimizer = MasterWeightsOptimizer([parameter], lr=1e-2)
    for step, gradient in enumerate(gradients):
        parameter.grad = gradient
        optimizer.step()
        if step == 1:
            torch.save(optimizer.state_dict(), tmp_path / "optimizer.pt")
    resumed_parameter = torch.nn.Parameter(start.clone())
    resumed = MasterWeightsOptimizer([resumed_parameter], lr=1e-2)
    resumed.load_state_dict(torch.load(tmp_path / "optimizer.pt", weights_only=True))
    assert not torch.equal(resumed.masters[0].to(torch.bfloat16).float(), resumed.masters[0]), \
        "the saved copy holds more than bf16 can"
    for gradient in gradients[2:]:
        resumed_parameter.grad = gradient
        resumed.step()
    assert torch.equal(resumed.masters[0], optimizer.masters[0])
    assert torch.equal(resumed_parameter.detach(), parameter.detach())


def test_a_state_of_another_shape_is_refused():
    parameter, _ = _pair()
    other = MasterWeightsOptimizer([parameter, torch.nn.Parameter(torch.zeros(2, dtype=torch.bfloat16))])
    with pytest.raises(ValueError, match="2 master weights"):
        MasterWeightsOptimizer([parameter]).load_state_dict(other.state_dict())


# The tiny model through TRL's SFTTrainer on the CPU, bf16 autocast as on a GPU: the Trainer's own optimizer choice,
# accelerate's optimizer wrapper, the LR schedule, gradient clipping and checkpoints all run for real.

def _trainer(tiny_artifact, pages, folder, method: str, masters: bool, steps: int = 3, save_steps: int = 0):
    from trl import SFTConfig, SFTTrainer

    from dharma_train.data.conversation import sft_dataset
    from dharma_train.data.pages import PageSet
    from dharma_train.models.loading import load_model, load_processor
    from dharma_train.training.config import LoraSettings
    from dharma_train.training.model_setup import lora_config

    torch.manual_seed(0)
    model = load_model(tiny_artifact, dtype="bfloat16")  # the reference's fp32 weights start from the same values
    if method == "full" and not masters:
        model = model.float()
    args = SFTConfig(output_dir=str(folder), per_device_train_batch_size=2, max_steps=steps, learning_rate=1e-3,
                     lr_scheduler_type="constant", bf16=True, use_cpu=True, report_to=[], logging_steps=1, seed=0,
                     data_seed=0, max_length=None, save_strategy="steps" if save_steps else "no",
                     save_steps=save_steps or 500)
    eight = PageSet(pages[0].root, pages[0].pages[:8])
    trainer = SFTTrainer(model=model, args=args, train_dataset=sft_dataset(eight, "structured"),
                         processing_class=load_processor(tiny_artifact.processor_location),
                         peft_config=lora_config(LoraSettings()) if method == "lora" else None)
    if masters:
        keep_masters_in_optimizer(trainer)
    return trainer


def _trained(trainer) -> dict[str, torch.Tensor]:
    """Each trained parameter's fp32 value: the optimizer's copy where it keeps one, else the parameter."""
    optimizer = getattr(trainer.optimizer, "optimizer", trainer.optimizer)  # inside accelerate's wrapper
    copies = dict(zip(map(id, optimizer.parameters), optimizer.masters)) if hasattr(optimizer, "masters") else {}
    return {name: copies.get(id(p), p.detach()).float().clone() for name, p in trainer.model.named_parameters()
            if p.requires_grad}


def _losses(trainer) -> list[float]:
    return [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]


@pytest.mark.parametrize("method", ["full", "lora"])
def test_three_steps_update_the_tiny_model_as_fp32_master_weights_under_autocast_do(tiny_artifact, pages, tmp_path,
                                                                                   method):
    """Against the path as it ships (full: fp32 parameters; LoRA: peft's fp32 adapters on the bf16 base), same
    batches under bf16 autocast: the same losses to 1e-3 and the same update within bf16 noise (the residual stream
    and norms then run in bf16, and Adam's first steps follow the gradients' signs), while the trained parameters
    are bf16 and equal their fp32 copies rounded."""
    reference = _trainer(tiny_artifact, pages, tmp_path / "reference", method, masters=False)
    ours = _trainer(tiny_artifact, pages, tmp_path / "ours", method, masters=True)
    start = _trained(reference)
    assert all(p.dtype == torch.bfloat16 for p in ours.model.parameters() if p.requires_grad)
    reference.train()
    ours.train()

    assert _losses(ours) == pytest.approx(_losses(reference), rel=1e-3)
    expected, updated = (torch.cat([(values[n] - start[n]).flatten() for n in start])
                         for values in (_trained(reference), _trained(ours)))
    assert float((updated - expected).norm()) < 0.1 * float(expected.norm())
    assert float(updated @ expected) > 0.995 * float(updated.norm() * expected.norm())
    copies = _trained(ours)
    for name, parameter in ours.model.named_parameters():
        if parameter.requires_grad:
            assert parameter.dtype == torch.bfloat16 and torch.equal(parameter.detach(), copies[name].bfloat16())


def test_a_resumed_run_continues_from_the_saved_fp32_copies(tiny_artifact, pages, tmp_path):
    """Full fine-tuning, a checkpoint at step 1 of 2: resumed from it, the second step ends on the same fp32 copies
    and bf16 weights as the run that never stopped (the copies, not the bf16 weights saved beside them, carry on)."""
    whole = _trainer(tiny_artifact, pages, tmp_path / "whole", "full", masters=True, steps=2, save_steps=1)
    whole.train()
    checkpoint = tmp_path / "whole" / "checkpoint-1"
    saved = torch.load(checkpoint / "optimizer.pt", weights_only=True)
    assert {tensor.dtype for tensor in saved["master_weights"]} == {torch.float32}

    resumed = _trainer(tiny_artifact, pages, tmp_path / "resumed", "full", masters=True, steps=2)
    resumed.train(resume_from_checkpoint=str(checkpoint))
    assert _losses(resumed)[-1] == _losses(whole)[-1]
    expected, got = _trained(whole), _trained(resumed)
    assert all(torch.equal(got[name], expected[name]) for name in expected)
    weights = zip(resumed.model.state_dict().values(), whole.model.state_dict().values())
    assert all(torch.equal(a, b) for a, b in weights)


def test_it_needs_half_precision_and_a_trainer_without_an_optimizer(tiny_artifact, pages, tmp_path):
    trainer = _trainer(tiny_artifact, pages, tmp_path, "lora", masters=False)
    with pytest.raises(ValueError, match="half-precision"):
        keep_masters_in_optimizer(trainer, torch.float32)
    trainer.create_optimizer()
    with pytest.raises(ValueError, match="already has an optimizer"):
        keep_masters_in_optimizer(trainer)
