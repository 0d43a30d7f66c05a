#!/usr/bin/env bash
# Issue 29 item 5: several tiny_reader ladders at once on the GPU machine's CPU cores, each on 2 threads and no GPU, as on
# the CI machine (2 cores), so one 10-minute call sweeps what takes this 2-core machine an hour. One line of SWEEP per
# run: a name, then dharma_train overrides (the recipe is tiny_reader; seeds are overrides too). At the end a table of
# every point, and runs.tar.gz (each run's summary.json, report.md, log tail) in $OUT:
#   run(command="bash scripts/experiments/tiny_reader/device_ladder_sweep.sh", carry=[".whl"])
# Overrides: SWEEP (default scripts/experiments/tiny_reader/sweep.txt), JOBS (runs at a time, default 8), LIMIT (s, 540),
# THREADS (per run, default 2). Here, without a GPU machine: GPU_WORK=runs/sweep OUT=runs/sweep JOBS=2 THREADS=1 bash ...
# Wall times here are not the CI machine's: the cores differ, and JOBS runs share memory bandwidth.
set -uo pipefail
[ -n "${GPU_WORK:-}" ] || exec bash "$(dirname "$0")/../../gpu.sh" bash "$(realpath "$0")" "$@"
set -f  # the overrides hold [..] lists: no globbing
SWEEP=${SWEEP:-scripts/experiments/tiny_reader/sweep.txt}; JOBS=${JOBS:-8}; LIMIT=${LIMIT:-540}; THREADS=${THREADS:-2}
while read -r name overrides; do
  while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do sleep 2; done
  mkdir -p "$GPU_WORK/runs/$name"
  # shellcheck disable=SC2086  # the overrides are words on purpose
  (start=$SECONDS; OMP_NUM_THREADS=$THREADS MKL_NUM_THREADS=$THREADS CUDA_VISIBLE_DEVICES="" timeout "$LIMIT" \
     "${PYTHON:-python3}" -m dharma_train recipe=tiny $overrides output_dir="$GPU_WORK/runs/$name" \
     hydra.run.dir="$GPU_WORK/runs/$name/hydra" > "$GPU_WORK/runs/$name.log" 2>&1
   echo "$name: exit $?, $((SECONDS - start)) s") &
done < <(grep -v -e '^#' -e '^\s*$' "$SWEEP")
wait  # the loop ran in this shell (not a pipe), so its runs are this shell's jobs
set +f
"${PYTHON:-python3}" -m scripts.experiments.tiny_reader.ladder_table "$GPU_WORK/runs"
cd "$GPU_WORK/runs" && for log in *.log; do tail -c 4000 "$log" > "${log%.log}/log_tail.txt"; done
tar -czf "$OUT/runs.tar.gz" --exclude='*/model' --exclude='*/trainer' --exclude='*/data' --exclude='*/hydra' \
  --exclude='*.safetensors' --exclude='*.jsonl' */summary.json */report.md */log_tail.txt 2>/dev/null
ls -la "$OUT"
