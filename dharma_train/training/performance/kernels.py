"""Fused Triton kernels from liger-kernel for the memory-bound layers: RMSNorm and the SwiGLU gate.

Eager RMSNorm is six kernels with fp32 copies saved for backward; eager SwiGLU saves silu(gate) as well as gate
and up. liger-kernel's versions are one kernel each way and save only their inputs. Patched per instance (not
liger's class-level `apply_liger_kernel_to_*`), so models built later in the same process stay stock. The LM
head's fused cross-entropy is not needed here: TRL's trainers already score only the labelled positions in chunks
(`add_fused_lm_head`), so the 152k-vocabulary logits are never materialized.
"""

from __future__ import annotations

import importlib.util
import types

import torch

NORMS = ("Qwen2RMSNorm", "Qwen2_5_VLRMSNorm")
GATED_MLPS = ("Qwen2MLP", "Qwen2_5_VLMLP")  # the language model's MLP and the vision tower's, both silu-gated
SILU = ("SiLU", "SiLUActivation")  # torch's and transformers' names for the same function


def liger_available() -> bool:
    return importlib.util.find_spec("liger_kernel") is not None


def use_fused_kernels(model, opaque_to_compile: bool = False) -> int:
    """Swap RMSNorm and silu-gated MLP forwards for liger-kernel's; returns how many modules were patched.

    With `opaque_to_compile` (performance.compile on) each liger call runs outside torch.compile's graph: dynamo
    cannot trace liger's autograd functions (an AssertionError in `overwrite_tensor_vt_proxy`, torch 2.11 with
    liger 0.8.5), so the compiled layer breaks its graph around them instead of failing.
    """
    patched = 0
    for module in model.modules():
        if getattr(module, "_dharma_stock_forward", None) is not None:
            continue
        name = type(module).__name__
        if name in NORMS:
            replacement = _rms_norm_forward
        elif name in GATED_MLPS and type(getattr(module, "act_fn", None)).__name__ in SILU:
            replacement = _swiglu_forward
        else:
            continue
        module._dharma_stock_forward = module.forward
        module._dharma_liger_call = torch.compiler.disable(_call_liger) if opaque_to_compile else _call_liger
        module.forward = types.MethodType(replacement, module)
        patched += 1
    return patched


def use_stock_kernels(module) -> int:
    """Undo `use_fused_kernels` inside `module` (a layer about to be compiled); returns how many modules it restored.
    A recomputed compiled layer must trace as one graph, and each liger call, opaque to dynamo, breaks it; inductor
    fuses the stock RMSNorm and gated MLP itself."""
    restored = 0
    for inner in module.modules():
        if getattr(inner, "_dharma_liger_call", None) is not None:
            inner.forward = inner._dharma_stock_forward
            del inner._dharma_liger_call, inner._dharma_stock_forward
            restored += 1
    return restored


def _call_liger(name: str, *args, **kwargs) -> torch.Tensor:
    from liger_kernel.transformers import functional

    return getattr(functional, name)(*args, **kwargs)


def _rms_norm_forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
    """Qwen's RMSNorm (fp32 statistics, cast back before the weight: liger's "llama" casting) in one kernel."""
    return self._dharma_liger_call("liger_rms_norm", hidden_states, self.weight, self.variance_epsilon,
                                   casting_mode="llama", in_place=False)


def _swiglu_forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
    """down(silu(gate(x)) * up(x)) with the gate product fused; the projections (LoRA-wrapped or not) run as they are."""
    gated = self._dharma_liger_call("liger_swiglu", self.gate_proj(hidden_states), self.up_proj(hidden_states))
    return self.down_proj(gated)
