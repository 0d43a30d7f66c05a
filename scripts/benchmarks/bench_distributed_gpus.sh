#!/usr/bin/env bash
# 1 GPU vs 2 GPUs (FSDP2), 3B full fine-tuning at the same global batch, and 7B full fine-tuning on 2 GPUs
# (scripts/benchmarks/bench_distributed.py). Needs the nvidia-h200-x2 kind; through the device tool, from .carry/<name>:
#   run(kind="nvidia-h200-x2", command="cd .carry/distributed && WHEELS=../../.whl bash scripts/benchmarks/bench_distributed_gpus.sh",
#       carry=[".carry/distributed", ".whl"])
# Writes bench_distributed_<tag>.json per configuration and bench_distributed.md (the table) to $OUT.
set -euo pipefail
[ -n "${GPU_WORK:-}" ] || exec bash "$(dirname "$0")/../gpu.sh" bash "$(realpath "$0")" "$@"  # the common preamble first
GPUS=$(nvidia-smi --list-gpus | wc -l)
[ "$GPUS" -ge 2 ] || { echo "needs 2 GPUs, found $GPUS"; exit 1; }
STEPS=${STEPS:-12}
torchrun --nproc_per_node 1 -m scripts.benchmarks.bench_distributed --shape 3b --strategy single --steps $STEPS --tag 3b_1gpu --out "$OUT"
torchrun --nproc_per_node 2 -m scripts.benchmarks.bench_distributed --shape 3b --strategy fsdp2 --steps $STEPS --tag 3b_2gpu_fsdp2 --out "$OUT"
torchrun --nproc_per_node 2 -m scripts.benchmarks.bench_distributed --shape 7b --strategy fsdp2 --steps $STEPS --tag 7b_2gpu_fsdp2 --out "$OUT"
python3 - "$OUT" <<'PY'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
runs = {tag: json.loads((out / f"bench_distributed_{tag}.json").read_text())
        for tag in ("3b_1gpu", "3b_2gpu_fsdp2", "7b_2gpu_fsdp2")}
base = runs["3b_1gpu"]["tokens_per_second_per_gpu"]
lines = ["| run | GPUs | global batch | tokens/s per GPU | scaling efficiency | peak memory per GPU (GiB) | train loss |",
         "|---|---|---|---|---|---|---|"]
for tag, r in runs.items():
    efficiency = f"{r['tokens_per_second_per_gpu'] / base:.0%}" if tag.startswith("3b") else "n/a"
    peaks = " / ".join(f"{p:.1f}" for p in r["peak_memory_gib_per_gpu"])
    lines.append(f"| {tag} | {r['gpus']} | {r['global_batch']} | {r['tokens_per_second_per_gpu']:.0f} | {efficiency} "
                 f"| {peaks} | {r['train_loss']:.3f} |")
(out / "bench_distributed.md").write_text("\n".join(lines) + "\n")
print("\n".join(lines))
PY
