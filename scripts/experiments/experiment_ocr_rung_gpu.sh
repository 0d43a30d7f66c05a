#!/usr/bin/env bash
# The OCR-rung experiment (scripts/experiments/experiment_ocr_rung.py, docs/experiments/ocr-rung.md) on one GPU: each seed's
# general base is pretrained, then its three arms run side by side (a 30 M model leaves the GPU mostly idle).
# Through the device tool (wheels for what the image lacks in .whl/, see docs/experiments/ocr-rung.md):
#   run(command="timeout 590 bash scripts/experiments/experiment_ocr_rung_gpu.sh", carry=[".whl"])
# SEEDS=0, SCALE=small and two loader workers per process by default (~330 s a call for one or two seeds on an H100,
# docs/experiments/ocr-rung.md); each process is cut at a time limit so the call always returns results.
# $OUT/work.tar.gz holds every arm's summary.json, so seeds run in separate calls are compared together afterwards:
#   python -m scripts.experiments.experiment_ocr_rung compare --work <the calls' work.tar.gz unpacked into one folder> --out <folder>
set -uo pipefail
[ -n "${GPU_WORK:-}" ] || exec bash "$(dirname "$0")/../gpu.sh" bash "$(realpath "$0")" "$@"  # the common preamble first
export OMP_NUM_THREADS=2 TOKENIZERS_PARALLELISM=false
WORK=${WORK:-$GPU_WORK/ocr_rung}; SEEDS=${SEEDS:-0}; SCALE=${SCALE:-small}
export EXPERIMENT_LOADER_WORKERS=${EXPERIMENT_LOADER_WORKERS:-2}
# Two seeds at scale small took 130 s to prepare and 137-194 s an arm in bf16: the limits keep the script < 600 s.
PREPARE_LIMIT=${PREPARE_LIMIT:-250}; ARM_LIMIT=${ARM_LIMIT:-320}
mkdir -p "$WORK/logs"
EXPERIMENT="python3 -m scripts.experiments.experiment_ocr_rung"
collect() {  # the table, plots and logs so far into $OUT: a call cut short (time or budget) still returns them
  $EXPERIMENT compare --work "$WORK" --out "$OUT" > "$OUT/compare.txt" 2>&1
  (cd "$WORK" && find . -path ./logs -prune -o \( -name summary.json -o -name wall.json -o -name prepared.json \
      -o -name report.md \) -print | tar -czf "$OUT/work.tar.gz" -T - 2>/dev/null)  # a tar: $OUT's depth is limited
  # Progress bars redraw with \r: split on it, drop the bars, keep log lines and the trainers' metrics.
  for log in "$WORK"/logs/*.log; do echo "=== $log"; tr '\r' '\n' < "$log" | grep -v "^ *$" | grep -v "[0-9]%|.*|" | tail -60; done > "$OUT/logs.txt"
}
( while sleep 30; do collect; done ) &
collector=$!
start=$(date +%s); seeds=()
for seed in $SEEDS; do
  (
    timeout "$PREPARE_LIMIT" $EXPERIMENT prepare --seed "$seed" --scale "$SCALE" --work "$WORK" \
      > "$WORK/logs/prepare_seed$seed.log" 2>&1 || { echo "seed $seed: prepare failed or timed out"; exit 1; }
    echo "seed $seed prepared after $(( $(date +%s) - start )) s"
    for arm in with_rung no_rung no_rung_budget; do
      ( timeout "$ARM_LIMIT" $EXPERIMENT arm --arm "$arm" --seed "$seed" --scale "$SCALE" --work "$WORK" \
          > "$WORK/logs/${arm}_seed$seed.log" 2>&1 || echo "seed $seed $arm: failed or timed out (partial points kept)"
        echo "seed $seed $arm done after $(( $(date +%s) - start )) s" ) &
    done
    wait
  ) &
  seeds+=($!)
done
wait "${seeds[@]}"  # not the collector
echo "experiment wall: $(( $(date +%s) - start )) s"
kill "$collector" 2>/dev/null
collect
cat "$OUT/compare.txt"
