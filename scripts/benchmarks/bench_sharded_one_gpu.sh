#!/usr/bin/env bash
# hardware=fsdp2 and hardware=zero3 at world size 1 through torchrun, against hardware=single, on the 3B shape
# (scripts/benchmarks/bench_distributed.py): a short full fine-tuning SFT stage and a DPO stage on its output, each saved
# model loaded with plain transformers, losses compared step by step with the single run's, the SFT weight
# update compared with the single run's. Through the device tool, from the repository root:
#   run(command="bash scripts/benchmarks/bench_sharded_one_gpu.sh", carry=[".whl"])
# STRATEGIES="fsdp2 zero3" picks the sharded rows, STEPS the steps per stage. Writes bench_distributed_<tag>.json
# per launch and bench_sharded_one_gpu.md (the table) to $OUT.
set -euo pipefail
[ -n "${GPU_WORK:-}" ] || exec bash "$(dirname "$0")/../gpu.sh" bash "$(realpath "$0")" "$@"  # the common preamble first
WORK=$GPU_WORK/bench_sharded  # the 3B folder and the saved models: ~40 GB on a 64 GB disk, removed on exit
COMMON="--shape 3b --stages sft dpo --steps ${STEPS:-4} --global-batch 4 --pages 16 --learning-rate 1e-4 --work $WORK --out $OUT"
run() {  # tag, strategy, extra arguments
  local tag=$1 strategy=$2; shift 2
  local start=$(date +%s)
  if timeout ${LAUNCH_TIMEOUT:-240} torchrun --nproc_per_node 1 -m scripts.benchmarks.bench_distributed $COMMON --strategy "$strategy" \
      --tag "$tag" "$@" > "$OUT/$tag.log" 2>&1; then
    echo "$tag: done in $(( $(date +%s) - start )) s"
  else
    echo "$tag: FAILED after $(( $(date +%s) - start )) s"; tail -25 "$OUT/$tag.log"
  fi
}
run 3b_single single --keep
for strategy in ${STRATEGIES:-fsdp2 zero3}; do run "3b_$strategy" "$strategy" --reference 3b_single; done
python3 - "$OUT" <<'PY'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
lines = ["| launch | stage | tokens/s | peak GiB | train s | load+save s | loss max rel. diff vs single | SFT update cosine | loads with transformers |",
         "|---|---|---|---|---|---|---|---|---|"]
for file in sorted(out.glob("bench_distributed_3b_*.json")):
    r = json.loads(file.read_text())
    for kind, s in r["stages"].items():
        diff = s.get("loss_max_relative_difference")
        cos = s.get("update_cosine")
        lines.append(f"| {r['tag']} ({r['strategy']}, {r['gpus']} process) | {kind} | {s['tokens_per_second']:,.0f} "
                     f"| {max(s['peak_memory_gib_per_gpu']):.1f} | {s['train_seconds']:.1f} | {s['load_gather_save_seconds']:.1f} "
                     f"| {'' if diff is None else f'{diff:.2e}'} | {'' if cos is None else f'{cos:.4f}'} | {s.get('loads_with_transformers', '')} |")
(out / "bench_sharded_one_gpu.md").write_text("\n".join(lines) + "\n")
print("\n".join(lines))
PY
