#!/usr/bin/env bash
# The one GPU wrapper: every benchmark and experiment run on the device machine goes through it. It does what every
# GPU run needs first, then runs the given command from the checkout root and exits with the command's status:
#   run(command="bash scripts/gpu.sh python3 -m scripts.benchmarks.bench_dpo", carry=[".whl"])
# - installs the wheels the GPU image lacks into /tmp/site, from WHEELS (folders, space-separated; default .whl;
#   WHEELS=../../.whl from a tree copied to .carry/<name>), and puts /tmp/site and the checkout on PYTHONPATH;
# - PYTHONUNBUFFERED=1, HF_HUB_OFFLINE=1 (nothing outside the machine can be reached), OUT (default /tmp/out) and
#   DHARMA_TRAIN_CACHE (default $GPU_WORK/dharma_cache) unless set;
# - prints the GPU's name, driver and memory and the installed torch, transformers, ... versions;
# - GPU_WORK (/tmp/gpu_work) is the command's scratch folder (checkpoint folders, saved models: the disk is 64 GB);
#   it is removed on exit;
# - the whole output is kept in $OUT/log.txt too.
# Wrappers that do more than one launch (scripts/*/*.sh) run themselves through this one first.
set -euo pipefail
cd "$(dirname "$0")/.."
for folder in ${WHEELS:-.whl}; do
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$folder"/*.whl
done
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
export GPU_WORK=${GPU_WORK:-/tmp/gpu_work} OUT=${OUT:-/tmp/out}
export DHARMA_TRAIN_CACHE=${DHARMA_TRAIN_CACHE:-$GPU_WORK/dharma_cache}
mkdir -p "$OUT" "$GPU_WORK"
trap 'rm -rf "$GPU_WORK"' EXIT
{
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  python3 - <<'PY'
from importlib.metadata import PackageNotFoundError, version

def installed(name):
    try:
        return f"{name} {version(name)}"
    except PackageNotFoundError:
        return None

names = ["torch", "transformers", "trl", "peft", "accelerate", "datasets", "liger-kernel", "llmcompressor",
         "compressed-tensors"]
print(" | ".join(filter(None, map(installed, names))))
PY
  "$@"
} 2>&1 | tee -a "$OUT/log.txt"  # pipefail: the command's exit status is the wrapper's
