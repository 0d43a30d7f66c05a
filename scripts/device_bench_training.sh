#!/usr/bin/env bash
# Training benchmark on the GPU machine (see scripts/benchmarks/bench_training.py). Through the device tool, from the lead's
# checkout with this tree rsynced to .carry/gpu-perf (wheels in the checkout's .whl):
#   run(command="cd .carry/gpu-perf && bash scripts/device_bench_training.sh", carry=[".carry/gpu-perf", ".whl"])
# Extra arguments go to the benchmark, e.g. --configs baseline-lora ours-lora --check --profile ours-full
# From a helper's worktree copied to the checkout's .h19/ (git archive HEAD | tar -x -C .h19), as on 2026-12-01:
#   run(command="cd .h19 && WHL=../.whl timeout 330 bash scripts/device_bench_training.sh --configs baseline-full
#       ours-full ours-full-80gb baseline-lora ours-lora ours-lora-7b ours-lora:compile=1 --check --profile ours-full",
#       carry=[".whl", ".h19"])
set -euo pipefail  # pipefail: the tee below keeps the benchmark's exit status
WHL=${WHL:-../../.whl}
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$WHL"/*.whl
export PYTHONPATH=/tmp/site:$PWD:$PWD/scripts PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
mkdir -p "${OUT:-.}"
python3 -m scripts.benchmarks.bench_training --out "${OUT:-.}" "$@" 2>&1 | tee "${OUT:-.}/bench_training.log"
