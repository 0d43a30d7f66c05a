"""Fast training on a CUDA GPU: padding-free packing, fused kernels, selective checkpointing (docs/performance.md)."""

from dharma_train.training.performance.apply import quantized_base, speed_up
from dharma_train.training.performance.config import PerformanceConfig

__all__ = ["PerformanceConfig", "quantized_base", "speed_up"]
