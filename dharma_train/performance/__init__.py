"""Fast training on a CUDA GPU: padding-free packing, fused kernels, selective checkpointing (docs/performance.md)."""

from dharma_train.performance.apply import performance_arguments, quantized_base, speed_up
from dharma_train.performance.config import PerformanceConfig

__all__ = ["PerformanceConfig", "performance_arguments", "quantized_base", "speed_up"]
