"""The evaluation hook: one function, run on the base model and after every stage, that answers "did it help?".

Throughput counts every page, degenerate ones included: with `model.generate` a looping page holds its whole
batch to the token bound, which is exactly the cost DharmaOCR measured; the continuous engine frees its slot when
it ends or (loop_stop) when its loop is confirmed. Token rates count the tokens really decoded. Cost per million
pages is the configured hourly price of the machine divided by the measured page rate. Memory is what the loaded
weights hold after generation (a compressed checkpoint may be decompressed when it runs; on CUDA a W4A16 folder
runs on int4 kernels instead) and, on a GPU, the peak allocated while generating; `decode_backend` says which
of those the language model's linears ran on, since the speed row is only true of that backend, and
`int4_kernel_choice` the timings that chose the int4 kernels (models/int4_chooser.py).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from itertools import chain
from pathlib import Path

import torch

from dharma_train.data.pages import PageSet
from dharma_train.distributed import is_main
from dharma_train.evaluation.generate import generate_across_ranks
from dharma_train.evaluation.loop_stop import LoopStop, stop_rule
from dharma_train.evaluation.metrics import aggregate, score_page
from dharma_train.models.quantized import decode_backend, int4_choices
from dharma_train.files import write_jsonl_atomically
from dharma_train.run_folder import PREDICTIONS


@dataclass
class EvalConfig:
    """How pages are generated and scored after each stage (config group `evaluation`)."""

    task: str = "structured"  # the final task: every stage is measured against it
    max_new_tokens: int = 2048  # outputs reaching it count as token-limit hits
    batch_size: int = 8  # pages per batch (generate engine) or slots (continuous engine)
    max_pages: int | None = None  # None: every evaluation page
    cache: str = "auto"  # generate engine's KV cache: auto (static, compiled, on CUDA; else dynamic) | static | dynamic
    engine: str = "auto"  # auto: continuous batching on CUDA, model.generate elsewhere | continuous | generate
    loop_stop: bool = True  # continuous engine: stop a confirmed loop early, score its projection to the bound
    loop_stop_repeats: int = 8  # a unit that reads as text is a loop once repeated this many times
    loop_stop_max_pattern_tokens: int = 128  # longest unit looked for, in tokens
    prefill_chunk_tokens: int = 8192  # continuous engine: prompt tokens a step writes beside the decode tokens; 0: all
    compile_decode: bool = False  # continuous engine: fuse the decode step with torch.compile before its CUDA graph
    price_per_hour: float = 2.5  # USD per hour of the evaluating machine, for cost per million pages

    def __post_init__(self):
        if self.task not in ("structured", "plain"):
            raise ValueError(f"evaluation.task must be 'structured' or 'plain', got {self.task!r}")
        if self.max_new_tokens < 1 or self.batch_size < 1:
            raise ValueError("evaluation.max_new_tokens and evaluation.batch_size must be at least 1")
        if self.max_pages is not None and self.max_pages < 1:
            raise ValueError(f"evaluation.max_pages must be >= 1, or null for every page; got {self.max_pages}")
        if self.cache not in ("auto", "static", "dynamic"):
            raise ValueError(f"evaluation.cache must be 'auto', 'static' or 'dynamic', got {self.cache!r}")
        if self.engine not in ("auto", "continuous", "generate"):
            raise ValueError(f"evaluation.engine must be 'auto', 'continuous' or 'generate', got {self.engine!r}")
        if self.price_per_hour < 0:
            raise ValueError("evaluation.price_per_hour must be >= 0")
        if self.prefill_chunk_tokens < 0:
            raise ValueError(f"evaluation.prefill_chunk_tokens must be >= 0 (0: whole prompts), got "
                             f"{self.prefill_chunk_tokens}")
        self.loop_stop_rule()  # refuses bad loop_stop_* values at start

    def loop_stop_rule(self) -> LoopStop | None:
        """The loop stop these settings ask for, or None."""
        return stop_rule(self.loop_stop, self.loop_stop_repeats, self.loop_stop_max_pattern_tokens)


def evaluate(model, processor, pages: PageSet, config: EvalConfig, output_dir: str | Path | None = None,
             progress: bool = True) -> dict:
    """Generate on the pages (split over the run's processes), score them, and (given a folder) keep every output
    in predictions.jsonl, written by rank 0; every process returns the same metrics.

    `model`: a loaded model, or a model folder / hub id / ModelArtifact, loaded here (with its processor when
    `processor` is None) on the GPU in bf16 where there is one."""
    model, processor = _loaded(model, processor)
    selected = pages.pages[: config.max_pages] if config.max_pages else pages.pages
    on_gpu = next(model.parameters()).device.type == "cuda"
    if on_gpu:
        torch.cuda.reset_peak_memory_stats()
    generations, seconds = generate_across_ranks(model, processor, selected, config.task, config.max_new_tokens,
                                                 config.batch_size, cache=config.cache, progress=progress,
                                                 engine=config.engine,
                                                 loop_stop=config.loop_stop_rule(),
                                                 prefill_chunk_tokens=config.prefill_chunk_tokens,
                                                 compile_step=config.compile_decode)
    scores = [score_page(page.id, page.family, g.text, page.answer, g.hit_token_limit, g.new_tokens)
              for page, g in zip(selected, generations)]
    metrics = aggregate(scores)
    metrics.update(throughput([g.tokens_decoded for g in generations], [g.seconds for g in generations], seconds,
                              config.price_per_hour))
    metrics["pages_stopped_early"] = sum(g.stopped_early for g in generations)
    metrics.update(memory(model, on_gpu))
    metrics["decode_backend"] = decode_backend(model)
    if int4_choices(model):
        metrics["int4_kernel_choice"] = int4_choices(model)
    if output_dir is not None and is_main():
        write_jsonl_atomically(Path(output_dir) / PREDICTIONS,
                               ({**asdict(score), "output": g.text} for score, g in zip(scores, generations)))
    return metrics


def _loaded(model, processor):
    """A model given by location is loaded the way the pipeline loads a point before evaluating it."""
    from dharma_train.artifact import ModelArtifact

    if isinstance(model, (str, Path)):
        model = ModelArtifact(path=str(model))
    if not isinstance(model, ModelArtifact):
        if processor is None:
            raise TypeError("evaluate(model, processor, ...): a loaded model needs its processor; or pass the "
                            "model's folder and processor=None to load both")
        return model, processor
    from dharma_train.models.loading import check_available, load_model, load_processor

    check_available(model)
    cuda = torch.cuda.is_available()
    network = load_model(model, dtype="bfloat16" if cuda else "float32", device="cuda" if cuda else "cpu")
    return network, processor if processor is not None else load_processor(model.processor_location)


def throughput(new_tokens: list[int], latencies: list[float], seconds: float, price_per_hour: float) -> dict:
    """Page and token rates, latency percentiles, and what a million pages cost at the given hourly price."""
    pages_per_second = len(new_tokens) / seconds if seconds > 0 else 0.0
    ordered = sorted(latencies)
    return {
        "seconds": seconds,
        "pages_per_second": pages_per_second,
        "new_tokens_per_second": sum(new_tokens) / seconds if seconds > 0 else 0.0,
        "latency_p50_seconds": _percentile(ordered, 50),
        "latency_p95_seconds": _percentile(ordered, 95),
        "cost_per_million_pages": price_per_hour / 3600 / pages_per_second * 1e6 if pages_per_second else 0.0,
    }


def memory(model, on_gpu: bool) -> dict:
    """GiB held by the model's weights and buffers now, and the GPU's peak allocation since the last reset."""
    held = sum(t.numel() * t.element_size() for t in chain(model.parameters(), model.buffers()))
    return {"model_memory_gib": held / 2**30,
            "peak_memory_gib": torch.cuda.max_memory_allocated() / 2**30 if on_gpu else None}


def _percentile(ordered: list[float], percent: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    if not ordered:
        return 0.0
    rank = max(1, -(-len(ordered) * percent // 100))
    return ordered[int(rank) - 1]
