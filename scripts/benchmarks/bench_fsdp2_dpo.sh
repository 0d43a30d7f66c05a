#!/usr/bin/env bash
# Why FSDP2's DPO losses differ from the single-process run's (docs/distributed.md): every DPO launch starts from
# the same saved SFT model (--dpo-from), so the engines differ and nothing else. Tiny shape on the GPU first (fast,
# a matrix of switches), then the 3B Hub-layout shape (single against fsdp2). Through the device tool:
#   run(command="bash scripts/benchmarks/bench_fsdp2_dpo.sh", carry=[".whl"])
# SHAPES="tiny 3b" picks the parts; VARIANTS=0 skips the tiny matrix of switches. Writes bench_distributed_<tag>.json per launch, the logs, and
# fsdp2_dpo.md (loss and reward-margin curves side by side) to $OUT, all in one fsdp2_dpo.tar.gz.
set -euo pipefail
[ -n "${GPU_WORK:-}" ] || exec bash "$(dirname "$0")/../gpu.sh" bash "$(realpath "$0")" "$@"  # the common preamble first
RESULTS=$GPU_WORK/fsdp2_dpo
WORK=$GPU_WORK/bench_fsdp2_dpo
mkdir -p "$RESULTS"
trap 'tar -czf "$OUT/fsdp2_dpo.tar.gz" -C "$RESULTS" .' EXIT  # scripts/gpu.sh removes $GPU_WORK afterwards
launch() {  # shape, tag, strategy, extra arguments
  local shape=$1 tag=$2 strategy=$3; shift 3
  local start=$(date +%s)
  if timeout ${LAUNCH_TIMEOUT:-240} torchrun --nproc_per_node 1 -m scripts.benchmarks.bench_distributed --shape "$shape" \
      --steps ${STEPS:-4} --global-batch 4 --pages 16 --learning-rate 1e-4 --work "$WORK/$shape" --out "$RESULTS" \
      --strategy "$strategy" --tag "$tag" "$@" > "$RESULTS/$tag.log" 2>&1; then
    echo "$tag: done in $(( $(date +%s) - start )) s" | tee -a "$RESULTS/log.txt"
  else
    echo "$tag: FAILED after $(( $(date +%s) - start )) s" | tee -a "$RESULTS/log.txt"; tail -25 "$RESULTS/$tag.log"
  fi
}
dpo() { launch "$1" "$2" "$3" --stages dpo --dpo-from "$1_single" --reference "$1_single" "${@:4}"; }
for shape in ${SHAPES:-tiny 3b}; do
  launch "$shape" "${shape}_single" single --stages sft dpo --keep
  dpo "$shape" "${shape}_fsdp2" fsdp2
  if [ "$shape" = tiny ] && [ "${VARIANTS:-1}" = 1 ]; then
    dpo tiny tiny_zero3 zero3
    dpo tiny tiny_fsdp2_plain fsdp2 --perf padding_free=false fused_kernels=false
    dpo tiny tiny_fsdp2_no_recompute fsdp2 --no-recompute
    dpo tiny tiny_single_no_recompute single --no-recompute
  fi
done
python3 - "$RESULTS" <<'PY' | tee "$RESULTS/fsdp2_dpo.md"
import json, sys
from pathlib import Path
rows = ["| launch | perf | recompute | DPO loss per step | reward margin per step | grad norm per step | max rel. loss diff |",
        "|---|---|---|---|---|---|---|"]
for file in sorted(Path(sys.argv[1]).glob("bench_distributed_*.json")):
    r = json.loads(file.read_text())
    s = r["stages"].get("dpo")
    if not s:
        continue
    steps = [e for e in s["log_history"] if "loss" in e]
    fmt = lambda key: ", ".join(f"{e.get(key, float('nan')):.3f}" for e in steps)
    diff = s.get("loss_max_relative_difference")
    rows.append(f"| {r['tag']} | {' '.join(r['perf']) or 'defaults'} | {r['recompute']} | {fmt('loss')} "
                f"| {fmt('rewards/margins')} | {fmt('grad_norm')} | {'' if diff is None else f'{diff:.2e}'} |")
print("\n".join(rows))
PY
