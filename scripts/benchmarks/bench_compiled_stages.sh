#!/usr/bin/env bash
# The real SFT and DPO stages (scripts/benchmarks/bench_distributed.py, one process, 3B shape, full fine-tuning with
# every layer recomputed) eager, then compiled as the defaults now do for both stages, and optionally with the
# master weights in the optimizer; each later launch's DPO starts from the eager launch's SFT model, and its losses
# are compared step by step with the eager launch's (issue 33: equal to 3 digits). Through the device tool:
#   run(command="bash scripts/benchmarks/bench_compiled_stages.sh", carry=[".whl"])
# VARIANTS="compiled masters" adds the launch with trainer.performance.master_weights=optimizer; STEPS the steps
# per stage, LAUNCH_TIMEOUT each launch's limit in seconds (300). Writes bench_distributed_<tag>.json per launch
# and bench_compiled_stages.md to $OUT.
set -euo pipefail
[ -n "${GPU_WORK:-}" ] || exec bash "$(dirname "$0")/../gpu.sh" bash "$(realpath "$0")" "$@"  # the common preamble first
WORK=$GPU_WORK/bench_compiled  # the 3B folder and the eager launch's saved models, removed on exit
COMMON="--shape 3b --strategy single --stages sft dpo --steps ${STEPS:-6} --global-batch 4 --pages 16 --learning-rate 1e-4 --work $WORK --out $OUT"
run() {  # tag, extra arguments
  local tag=$1; shift
  local start=$(date +%s)
  if timeout ${LAUNCH_TIMEOUT:-300} torchrun --nproc_per_node 1 -m scripts.benchmarks.bench_distributed $COMMON \
      --tag "$tag" "$@" > "$OUT/$tag.log" 2>&1; then
    echo "$tag: done in $(( $(date +%s) - start )) s"
  else
    echo "$tag: FAILED after $(( $(date +%s) - start )) s"; tail -25 "$OUT/$tag.log"
  fi
}
run 3b_eager --keep --perf compile=off
for variant in ${VARIANTS:-compiled}; do
  case $variant in
    compiled) run 3b_compiled --reference 3b_eager --dpo-from 3b_eager ;;
    masters) run 3b_masters --reference 3b_eager --dpo-from 3b_eager --perf master_weights=optimizer ;;
    *) echo "unknown variant $variant (compiled, masters)"; exit 2 ;;
  esac
done
python3 - "$OUT" <<'PY'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
lines = ["| launch | stage | tokens/s | peak GiB | train s | load+save s | loss max rel. diff vs eager | losses |",
         "|---|---|---|---|---|---|---|---|"]
for file in sorted(out.glob("bench_distributed_3b_*.json")):
    r = json.loads(file.read_text())
    for kind, s in r["stages"].items():
        diff = s.get("loss_max_relative_difference")
        losses = [round(loss, 4) for _, loss in s.get("loss_curve") or []]
        lines.append(f"| {r['tag']} ({' '.join(r['perf']) or 'defaults'}) | {kind} | {s['tokens_per_second']:,.0f} "
                     f"| {max(s['peak_memory_gib_per_gpu']):.1f} | {s['train_seconds']:.1f} | "
                     f"{s['load_gather_save_seconds']:.1f} | {'' if diff is None else f'{diff:.2e}'} | {losses} |")
(out / "bench_compiled_stages.md").write_text("\n".join(lines) + "\n")
print("\n".join(lines))
PY
