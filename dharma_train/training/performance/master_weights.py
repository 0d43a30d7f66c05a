"""Half-precision parameters in the forward and backward, fp32 master copies in the optimizer (`master_weights:
optimizer`).

Full fine-tuning under bf16 autocast keeps fp32 parameters, so every forward casts each weight to bf16 and backward
casts each weight gradient back to fp32: 16 % of the H200 step's kernel time went to copies and casts
(docs/performance.md, fourth run). Here the model holds bf16 parameters and receives bf16 gradients; the optimizer
keeps an fp32 copy of each trained parameter, steps the Trainer's own optimizer (fused AdamW on CUDA) on those copies
with the gradients cast to fp32, and writes the rounded result back into the parameters. Updates far below a bf16
weight's spacing still add up in the fp32 copy, which is why full fine-tuning never trains pure-bf16 weights.
Gradient accumulation sums the micro-batches' gradients in bf16.

Hand-written: torch, transformers and accelerate have no such optimizer wrapper (apex's and Transformer Engine's
fused Adam do, as CUDA builds, not a wrapper around the optimizer the Trainer picks).
"""

from __future__ import annotations

import torch

HALF = (torch.bfloat16, torch.float16)


class MasterWeightsOptimizer(torch.optim.Optimizer):
    """`optimizer_class` over fp32 copies of the given (half-precision) parameters; the parameters take the rounded
    copies after every step. `param_groups` and `state` are the inner optimizer's, so LR schedulers and the Trainer
    see an ordinary optimizer; `state_dict` carries the fp32 copies, so a resumed run continues from them."""

    def __init__(self, params, optimizer_class=torch.optim.AdamW, **defaults):
        groups = list(params)
        if groups and not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        self.parameters, self.masters, master_groups = [], [], []
        for group in groups:
            parameters = list(group["params"])
            masters = [parameter.detach().to(torch.float32, copy=True) for parameter in parameters]
            self.parameters += parameters
            self.masters += masters
            master_groups.append({**{k: v for k, v in group.items() if k != "params"}, "params": masters})
        self.optimizer = optimizer_class(master_groups, **defaults)

    @property
    def param_groups(self):
        return self.optimizer.param_groups

    @param_groups.setter
    def param_groups(self, groups):
        self.optimizer.param_groups = groups

    @property
    def state(self):
        return self.optimizer.state

    @state.setter
    def state(self, state):
        self.optimizer.state = state

    @property
    def defaults(self):
        return self.optimizer.defaults

    @defaults.setter
    def defaults(self, defaults):
        self.optimizer.defaults = defaults

    @torch.no_grad()
    def step(self, closure=None):
        """Cast the gradients to fp32 onto the copies, step them, round them back into the parameters."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for parameter, master in zip(self.parameters, self.masters):
            master.grad = None if parameter.grad is None else parameter.grad.to(torch.float32)
        self.optimizer.step()
        for master in self.masters:
            master.grad = None  # the fp32 gradients live only for the step
        torch._foreach_copy_(self.parameters, self.masters)
        return loss

    def zero_grad(self, set_to_none: bool = True):
        for parameter in self.parameters:
            if set_to_none:
                parameter.grad = None
            elif parameter.grad is not None:
                parameter.grad.zero_()

    def state_dict(self) -> dict:
        return {"optimizer": self.optimizer.state_dict(), "master_weights": list(self.masters)}

    @torch.no_grad()
    def load_state_dict(self, state_dict: dict) -> None:
        """The inner optimizer's state, and the fp32 copies, which the parameters then take rounded."""
        saved = state_dict["master_weights"]
        if len(saved) != len(self.masters):
            raise ValueError(f"the saved optimizer holds {len(saved)} master weights, this one {len(self.masters)}")
        self.optimizer.load_state_dict(state_dict["optimizer"])
        for master, value in zip(self.masters, saved):
            master.copy_(value)
        torch._foreach_copy_(self.parameters, self.masters)


def keep_masters_in_optimizer(trainer, dtype: torch.dtype = torch.bfloat16) -> int:
    """Cast the trained parameters still in fp32 (LoRA's adapters, which peft upcasts) to `dtype`, and have the
    Trainer build its own optimizer over fp32 copies of them (`MasterWeightsOptimizer`); call before `train()`.
    Returns how many parameters were cast."""
    if dtype not in HALF:
        raise ValueError(f"master weights in the optimizer need half-precision parameters, got {dtype}")
    if trainer.optimizer is not None:
        raise ValueError("the trainer already has an optimizer; its parameters would not be the master copies")
    cast = 0
    for parameter in trainer.model.parameters():
        if parameter.requires_grad and parameter.dtype != dtype:
            parameter.data = parameter.data.to(dtype)
            cast += 1
    optimizer_class, options = trainer.get_optimizer_cls_and_kwargs(trainer.args, trainer.model)
    trainer.optimizer_cls_and_kwargs = (MasterWeightsOptimizer, {"optimizer_class": optimizer_class, **options})
    return cast
