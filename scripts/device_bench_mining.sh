#!/usr/bin/env bash
# DPO pair mining on a looping 3B model (scripts/benchmarks/bench_mining.py): the `generate` path against the continuous engine
# with and without the loop stop. Through the device tool, from the repository root:
#   run(command="bash scripts/device_bench_mining.sh", carry=[".whl"])
# Extra arguments go to the benchmark. Writes bench_mining.json and log.txt to $OUT.
set -euo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site:$PWD:$PWD/scripts PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
OUT=${OUT:-.}
trap 'rm -rf /tmp/loop3b' EXIT
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$OUT/log.txt"
python3 -m dharma_train.models.hub_layout /tmp/loop3b --shape 3b --looping 2>&1 | tail -1 | tee -a "$OUT/log.txt"
timeout ${BENCH_TIMEOUT:-420} python3 -m scripts.benchmarks.bench_mining --model /tmp/loop3b --out "$OUT" "$@" 2>&1 \
  | grep -v "it/s]$" | tee -a "$OUT/log.txt"
