#!/usr/bin/env bash
# The tiny ladder and the fast tests on the GPU machine's own package versions (torch 2.11, transformers 5.17,
# peft 0.21, accelerate 1.15), with the packages that image lacks carried as wheels in .whl/ (see docs/gpu.md).
# Run through the device tool from the repository root:
#   run(command="bash scripts/device_tiny_ladder.sh", carry=[".whl"])
set -euo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 DHARMA_TRAIN_CACHE=/tmp/dharma_cache
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
python3 -c "import torch, transformers, peft, accelerate, trl, datasets, hydra; print('torch', torch.__version__, '| transformers', transformers.__version__, '| peft', peft.__version__, '| accelerate', accelerate.__version__, '| trl', trl.__version__, '| datasets', datasets.__version__, '| hydra', hydra.__version__)"
# wandb is a dependency the GPU image lacks and is not carried: its two tests are left out here.
python3 -m pytest -q -m "not slow" -k "not wandb" -p no:cacheprovider tests 2>&1 | tail -5 || true
start=$(date +%s)
python3 -m dharma_train output_dir=/tmp/run trainer=auto > "$OUT/tiny_gpu.log" 2>&1 || { tail -60 "$OUT/tiny_gpu.log"; exit 1; }
echo "tiny ladder on the GPU (trainer=auto): $(( $(date +%s) - start )) s wall"
cp /tmp/run/report.md /tmp/run/summary.json "$OUT/"
cat /tmp/run/report.md
