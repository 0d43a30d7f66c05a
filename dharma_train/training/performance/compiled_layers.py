"""torch.compile of the repeated layers, the recomputed ones checkpointed inside their own compiled graph.

transformers' checkpointing wraps a layer's call from outside. Around a compiled layer that failed in backward on the
H200 (torch 2.11, `CheckpointError`: the recomputation saved tensors of other metadata), so compile used to be off
whenever any layer recomputed. Here a recomputed layer has that outer wrapper off, and the function compiled for it
calls `torch.utils.checkpoint.checkpoint` itself: dynamo traces the call as the activation-checkpoint higher-order
op, and AOTAutograd's partitioner recomputes the region inside the compiled backward, keeping only the layer's
inputs, as eager checkpointing does (`tests/training/performance/test_compiled_layers.py` counts the saved bytes).

The region must trace as one graph: a graph break inside it makes dynamo run the checkpoint eagerly around compiled
pieces, the failing case above. So every compiled layer runs the stock RMSNorm and gated MLP (inductor fuses them)
rather than liger's kernels, whose calls dynamo cannot trace and so breaks the graph around. A vision block's
attention still breaks its graph (the windows' longest length, a host sync, in `models/varlen.py`), so a vision
block that recomputes stays eager under transformers' checkpointing; the vision tower is frozen by default, and a
frozen block keeps nothing for backward to recompute.
"""

from __future__ import annotations

import types

from torch.utils.checkpoint import checkpoint

from dharma_train.training.performance.kernels import use_stock_kernels
from dharma_train.training.performance.recompute import layer_stacks, recomputes

REPEATED = ("Qwen2_5_VLVisionBlock", "Qwen2_5_VLDecoderLayer")
ONE_GRAPH = ("Qwen2_5_VLDecoderLayer",)  # traced whole, so it can recompute inside its compiled graph


def compile_layers(model, policy: str = "off") -> int:
    """torch.compile (dynamic shapes) each vision block and decoder layer; decoder layers that `policy` recomputes
    checkpoint inside the compiled function, vision blocks it recomputes stay eager. Call after the policy's probe:
    the outer checkpoint flags of compiled layers are turned off here. Returns how many layers were compiled."""
    compiled = 0
    for stack in layer_stacks(model):
        for index, layer in enumerate(stack):
            name = type(layer).__name__
            if name not in REPEATED or (recomputes(policy, index) and name not in ONE_GRAPH):
                continue
            use_stock_kernels(layer)
            layer.gradient_checkpointing = False  # never transformers' wrapper around a compiled layer
            if recomputes(policy, index):
                layer._dharma_eager_forward = layer.forward
                layer.forward = types.MethodType(_recomputed_forward, layer)
            layer.compile(dynamic=True)
            compiled += 1
    return compiled


def _recomputed_forward(self, *args, **kwargs):
    """The layer's forward with its activations recomputed in backward; traced whole by dynamo into the compiled
    graph. transformers' own wrapper drops the KV cache under checkpointing: a training forward has none."""
    return checkpoint(self._dharma_eager_forward, *args, use_reentrant=False, **kwargs)
