"""GRPO's sampling on one GPU: TRL's `model.generate` (`engine=generate`) against the continuous engine
(`engine=continuous`, dharma_train/stages/grpo_rollout.py), each through the real `GRPOStage`, LoRA, on the same pages.

Model: a Qwen2.5-VL checkpoint folder laid out like the Hub's (`dharma_train/models/hub_layout.py`, random init, 3B
shape by default), so its answers run to the bound: the figure is the cost of sampling a bounded group, not its
quality. Pages: synthetic 896 x 1288 px (1,472 image tokens). Every step samples `--generations` answers to each of
`--pages-per-step` pages, then TRL scores them and takes the loss; the sampling call (TRL's `_generate`, which the
rollout runs inside) is timed on its own. The first step of each row is the warm-up (CUDA graph capture, kernels).

    python -m scripts.benchmarks.bench_grpo [--steps 3] [--generations 8] [--pages-per-step 4] [--max-new-tokens 256]
On the device: run(command="bash scripts/gpu.sh timeout 500 python3 -m scripts.benchmarks.bench_grpo", carry=[".whl"])
CPU smoke test: python -m scripts.benchmarks.bench_grpo --shape tiny --device cpu --steps 2 --generations 2
    --pages-per-step 2 --max-new-tokens 8 --width 112 --height 112
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import torch


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", help="a checkpoint folder; a random-init Hub-layout one is built when absent")
    parser.add_argument("--shape", choices=("3b", "tiny"), default="3b")
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--generations", type=int, default=8)
    parser.add_argument("--pages-per-step", type=int, default=4)
    parser.add_argument("--max-new-tokens", type=int, default=256)
    parser.add_argument("--width", type=int, default=896)
    parser.add_argument("--height", type=int, default=1288)
    parser.add_argument("--engines", nargs="+", default=["generate", "continuous"])
    parser.add_argument("--out", default=os.environ.get("OUT", "."))
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench_grpo_"))
    try:
        run(args, work)
    finally:  # the pages, the stages' saved models and a 3B model built here: the GPU machine's disk is small
        shutil.rmtree(work, ignore_errors=True)


class SamplingClock:
    """Seconds of each call of TRL's `_generate` (the sampling, through either engine): a benchmark's probe."""

    def __init__(self):
        from trl import GRPOTrainer

        self.calls: list[float] = []
        self.original = GRPOTrainer._generate
        clock = self

        def timed(trainer, prompts):
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            start = time.perf_counter()
            result = clock.original(trainer, prompts)
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            clock.calls.append(time.perf_counter() - start)
            return result

        GRPOTrainer._generate = timed

    def close(self):
        from trl import GRPOTrainer

        GRPOTrainer._generate = self.original


def run(args, work: Path):
    """One row per engine on the same pages and model; writes bench_grpo.json to args.out."""
    from dharma_train import GRPOStage, StageContext, TrainerConfig
    from dharma_train.artifact import ModelArtifact
    from dharma_train.data.synthetic.generate import generate_pages
    from dharma_train.models.config import ModelConfig
    from dharma_train.models.hub_layout import write_checkpoint

    folder = args.model or str(write_checkpoint(work / "model", args.shape, device=args.device))
    max_pixels = args.width * args.height
    pages = generate_pages(work / "pages", args.pages_per_step * args.steps, seed=0, width=args.width,
                           height=args.height, workers=min(8, os.cpu_count() or 1))
    answers = args.pages_per_step * args.generations
    context = StageContext(trainer=TrainerConfig(device=args.device, logging_steps=1,
                                                 precision="bf16" if args.device == "cuda" else "fp32"),
                           model=ModelConfig(max_pixels=max_pixels))
    report = {"device": torch.cuda.get_device_name() if args.device == "cuda" else "cpu", "torch": torch.__version__,
              "transformers": __import__("transformers").__version__, "trl": __import__("trl").__version__,
              "shape": args.shape, "steps": args.steps, "generations": args.generations,
              "pages_per_step": args.pages_per_step, "max_new_tokens": args.max_new_tokens,
              "page_size": [args.width, args.height], "rows": []}
    for engine in args.engines:
        stage = GRPOStage("grpo", {"engine": engine, "num_generations": args.generations,
                                   "max_new_tokens": args.max_new_tokens,
                                   "optimization": {"method": "lora", "max_steps": args.steps, "batch_size": answers,
                                                    "learning_rate": 1e-6}})
        if args.device == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        clock = SamplingClock()
        start = time.perf_counter()
        try:
            result = stage.run(ModelArtifact(path=folder), pages, work / engine, context)
        finally:
            clock.close()
        wall = time.perf_counter() - start
        record = result.metrics["grpo"]
        after_warmup = clock.calls[1:] or clock.calls
        row = {"engine": engine, "sampling_seconds_per_step": clock.calls,
               "sampling_seconds_median_after_warmup": statistics.median(after_warmup),
               "answers_per_second_after_warmup": answers / statistics.median(after_warmup),
               "train_seconds": result.metrics.get("train_runtime"), "stage_wall_seconds": wall,
               "answers": record["answers"], "hit_token_limit": record["hit_token_limit"],
               "peak_memory_gib": torch.cuda.max_memory_allocated() / 2**30 if args.device == "cuda" else None}
        first = report["rows"][0] if report["rows"] else row
        row["sampling_speedup_over_first_row"] = (first["sampling_seconds_median_after_warmup"]
                                                  / row["sampling_seconds_median_after_warmup"])
        report["rows"].append(row)
        print(f"ROW {engine}: sampling {row['sampling_seconds_median_after_warmup']:.2f} s a step "
              f"({answers} answers, {row['answers_per_second_after_warmup']:.1f} answers/s, "
              f"{row['sampling_speedup_over_first_row']:.2f}x the first row), train {row['train_seconds']:.1f} s, "
              f"{row['hit_token_limit']} of {row['answers']} answers at the bound", flush=True)
        shutil.rmtree(work / engine, ignore_errors=True)
    Path(args.out, "bench_grpo.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
