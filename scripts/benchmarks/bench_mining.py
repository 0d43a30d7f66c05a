"""DPO pair mining on a model that loops: pairs per minute of the path before the continuous engine against today's.

The model is a 3B checkpoint folder laid out like the Hub's whose every answer is a repeated address line
(`python -m dharma_train.models.hub_layout --looping`: dense compute per token, a loop by construction), so every greedy and
sampled answer runs into the mining bound unless the loop stop ends it. Every row runs the real `mine_pairs` on the
same pages in the same process:
- `generate`: the path before the continuous engine (`mining.engine=generate`: `model.generate` on batches of
  pages, with the static compiled cache `cache: auto` picks on CUDA); one untimed warm-up run compiles it first;
- `continuous, loop stop off`: the continuous engine, every answer to the bound;
- `continuous, loop stop on`: the default on CUDA.
Pairs must come out the same in every row (the loop stop's rejected text is its projection to the bound).

    python -m scripts.benchmarks.bench_mining --model DIR [--pages 32] [--max-new-tokens 512] [--batch 16]
On the device (builds the looping 3B folder itself): run(command="bash scripts/gpu.sh timeout 420 python3 -m
    scripts.benchmarks.bench_mining", carry=[".whl"])
CPU smoke test: python -m scripts.benchmarks.bench_mining --shape tiny --device cpu --pages 4 --max-new-tokens 64
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", help="a looping checkpoint folder; built here when absent")
    parser.add_argument("--shape", choices=("3b", "tiny"), default="3b")
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--pages", type=int, default=32)
    parser.add_argument("--width", type=int, default=896)
    parser.add_argument("--height", type=int, default=1288)
    parser.add_argument("--max-new-tokens", type=int, default=512)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--rows", nargs="+", default=["generate", "continuous", "continuous_loop_stop"])
    parser.add_argument("--out", default=os.environ.get("OUT", "."))
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench_mining_"))
    try:
        run(args, work)
    finally:  # the pages, and a 3B model built here (7.5 GB): the GPU machine's disk is small
        shutil.rmtree(work, ignore_errors=True)


def run(args, work: Path):
    """Every row on the same pages; writes bench_mining.json to args.out."""
    from dharma_train.artifact import ModelArtifact
    from dharma_train.data.synthetic.generate import generate_pages
    from dharma_train.models.hub_layout import write_checkpoint
    from dharma_train.models.config import ModelConfig
    from dharma_train.models.loading import load_model, load_processor
    from dharma_train.stages.mining import MiningConfig, mine_pairs

    folder = args.model or str(write_checkpoint(work / "model", args.shape, looping=True, device=args.device))
    max_pixels = args.width * args.height
    pages = generate_pages(work / "pages", args.pages, seed=0, width=args.width, height=args.height,
                           workers=min(8, os.cpu_count() or 1))
    processor = load_processor(folder, max_pixels=max_pixels)
    model = load_model(ModelArtifact(path=folder), dtype="bfloat16" if args.device == "cuda" else "float32",
                       settings=ModelConfig(max_pixels=max_pixels), device=args.device)
    base = MiningConfig(max_new_tokens=args.max_new_tokens, batch_size=args.batch, min_pairs=1)
    configs = {"generate": replace(base, engine="generate", loop_stop=False),
               "continuous": replace(base, engine="continuous", loop_stop=False),
               "continuous_loop_stop": replace(base, engine="continuous", loop_stop=True)}
    report = {"device": torch.cuda.get_device_name() if args.device == "cuda" else "cpu",
              "torch": torch.__version__, "transformers": __import__("transformers").__version__,
              "pages": args.pages, "max_new_tokens": args.max_new_tokens, "batch": args.batch,
              "page_size": [args.width, args.height], "rows": []}
    rejected = {}
    for name in args.rows:
        config = configs[name]
        if name == "generate" and args.device == "cuda":  # compile the static cache's graphs outside the timing
            mine_pairs(model, processor, replace(pages, pages=pages.pages[:args.batch]), "structured",
                       replace(config, greedy=True, samples_per_page=0), progress=False)
        if args.device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        pairs, stats = mine_pairs(model, processor, pages, "structured", config, seed=0, progress=False)
        if args.device == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
        rejected[name] = sorted((p.id, p.rejected) for p in pairs)
        row = {"config": name, "pairs": len(pairs), "seconds": seconds, "pairs_per_minute": 60 * len(pairs) / seconds,
               "generation_seconds": stats["seconds"], "answers": stats["generated"],
               "pairs_by_reason": stats["pairs_by_reason"]}
        first = report["rows"][0] if report["rows"] else None
        row["x_first_row"] = (1.0 if first is None else
                              row["pairs_per_minute"] / first["pairs_per_minute"] if first["pairs"] else None)
        row["same_pairs_as_first_row"] = rejected[name] == rejected[report["rows"][0]["config"]] if first else True
        report["rows"].append(row)
        print(f"ROW {name}: {row['pairs']} pairs in {seconds:.1f} s = {row['pairs_per_minute']:.1f} pairs/min "
              f"({row['x_first_row'] or 0:.2f}x), same pairs: {row['same_pairs_as_first_row']}", flush=True)
    Path(args.out, "bench_mining.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
