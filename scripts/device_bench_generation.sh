#!/usr/bin/env bash
# Generation benchmark on the GPU machine (see scripts/benchmarks/bench_generation.py). Through the device tool, from a
# checkout whose .whl/ holds the wheels the image lacks:
#   run(command="bash scripts/device_bench_generation.sh", carry=[".whl"])
# Extra arguments go to the benchmark (e.g. --pages 64). Writes bench_generation.json, profile.txt and log.txt
# under $OUT.
set -euo pipefail
WHEELS=${WHEELS:-.whl}
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$WHEELS"/*.whl
export PYTHONPATH=/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
OUT=${OUT:-.}
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$OUT/log.txt"
MODULE=${MODULE:-scripts.benchmarks.bench_generation}  # scripts.benchmarks.bench_decode_step: where a decode step's time goes
timeout ${BENCH_TIMEOUT:-330} python3 -m "$MODULE" --out "$OUT" "$@" 2>&1 | tee -a "$OUT/log.txt"
