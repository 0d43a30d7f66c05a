#!/usr/bin/env bash
# Mining + LoRA DPO cost on the GPU machine (see scripts/benchmarks/bench_dpo.py). Through the device tool:
#   run(command="bash scripts/device_bench_dpo.sh", carry=[".whl"])
set -euo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site:$PWD:$PWD/scripts PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
python3 -m scripts.benchmarks.bench_dpo --out "${OUT:-.}" "$@"
