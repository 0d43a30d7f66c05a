"""What anti-degeneration DPO costs on one GPU: pair mining (pairs per minute) and LoRA DPO (tokens/s), with memory.

Model: the random-init Qwen2.5-VL-3B-shaped model of scripts/benchmarks/bench_generation.py, saved to local disk so the real
`DPOStage` loads it like any artifact. Pages: synthetic 896 x 1288 px (1,472 image tokens). A random model loops on
every page, so mining finds a rejected answer wherever it looks: the figure is the cost of mining, not its yield.

    run(command="bash scripts/gpu.sh python3 -m scripts.benchmarks.bench_dpo", carry=[".whl"])
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import torch


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--pages", type=int, default=32)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--out", default=os.environ.get("OUT", "."))
    args = parser.parse_args()

    from bench_generation import model_3b

    from dharma_train import DPOStage, DPOStageConfig, LoraSettings, OptimizationConfig, StageContext, TrainerConfig
    from dharma_train.artifact import ModelArtifact
    from dharma_train.data.pairs import load_pairs
    from dharma_train.data.synthetic.generate import generate_pages
    from dharma_train.models.config import ModelConfig
    from dharma_train.models.loading import load_processor
    from dharma_train.models.tiny import tiny_model_dir
    from dharma_train.stages.mining import MiningConfig

    work = Path(tempfile.mkdtemp())
    processor = load_processor(str(tiny_model_dir(work / "cache")), max_pixels=1288 * 896)
    pages = generate_pages(work / "pages", args.pages, seed=0, width=896, height=1288)
    model = model_3b(processor.tokenizer)
    # The full-size vocabulary is random beyond the offline tokenizer's 1,024 entries, and those ids decode to
    # nothing: keep generation inside the tokenizer so mined answers are text.
    model.generation_config.suppress_tokens = list(range(len(processor.tokenizer), model.config.text_config.vocab_size))
    model.save_pretrained(work / "model")
    processor.save_pretrained(work / "model")
    del model
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()

    mining = MiningConfig(greedy=True, samples_per_page=1, max_new_tokens=128, batch_size=32, min_pairs=4,
                          max_pairs_per_page=2)
    config = DPOStageConfig(pairs="mined", mining=mining, sft_loss_weight=0.2, optimization=OptimizationConfig(
        method="lora", lora=LoraSettings(r=16, alpha=32), learning_rate=5e-6, max_steps=args.steps, batch_size=2,
        gradient_accumulation=1))
    context = StageContext(trainer=TrainerConfig(device="cuda", precision="bf16", gradient_checkpointing=True,
                                                 logging_steps=1), model=ModelConfig(max_pixels=1288 * 896))
    started = time.perf_counter()
    result = DPOStage("dpo", config).run(ModelArtifact(path=str(work / "model")), pages, work / "dpo", context)
    wall = time.perf_counter() - started
    metrics = result.metrics
    if result.skipped:
        raise SystemExit(f"DPO was skipped: {result.skipped} ({metrics.get('mining')})")
    pairs = load_pairs(work / "dpo")
    mined_seconds = metrics["mining"]["seconds"]
    tokenizer = processor.tokenizer
    text_tokens = [len(tokenizer(p.chosen)["input_ids"]) + len(tokenizer(p.rejected)["input_ids"]) for p in pairs]
    trained_pairs = min(len(pairs), args.steps * config.optimization.batch_size)
    prompt_tokens = 1472 + 40  # image tokens + chat template and instruction, per side
    dpo_tokens = sum(text_tokens[:trained_pairs]) + 2 * prompt_tokens * trained_pairs
    report = {
        "gpu": torch.cuda.get_device_name(), "torch": torch.__version__,
        "transformers": __import__("transformers").__version__, "trl": __import__("trl").__version__,
        "pages": args.pages, "answers_generated": metrics["mining"]["generated"], "pairs": len(pairs),
        "mining_seconds": mined_seconds, "pairs_per_minute": len(pairs) / mined_seconds * 60,
        "dpo_steps": args.steps, "dpo_train_seconds": metrics["train_runtime"],
        "dpo_tokens_per_second": dpo_tokens / metrics["train_runtime"],
        "stage_wall_seconds": wall, "peak_memory_gib": torch.cuda.max_memory_allocated() / 2**30,
    }
    Path(args.out, "bench_dpo.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
