#!/usr/bin/env bash
# The tiny ladder and the fast tests on the GPU machine's own package versions (torch 2.11, transformers 5.17,
# peft 0.21, accelerate 1.15), with the packages that image lacks carried as wheels in .whl/ (see docs/gpu.md).
# Run through the device tool from the repository root:
#   run(command="bash scripts/benchmarks/tiny_ladder.sh", carry=[".whl"])
set -euo pipefail
[ -n "${GPU_WORK:-}" ] || exec bash "$(dirname "$0")/../gpu.sh" bash "$(realpath "$0")" "$@"  # the common preamble first
python3 -c "import hydra; print('hydra', hydra.__version__)"
# wandb is a dependency the GPU image lacks and is not carried: its two tests are left out here.
python3 -m pytest -q -m "not slow" -k "not wandb" -p no:cacheprovider tests 2>&1 | tail -5 || true
start=$(date +%s)
python3 -m dharma_train output_dir="$GPU_WORK/run" trainer=auto > "$OUT/tiny_gpu.log" 2>&1 || { tail -60 "$OUT/tiny_gpu.log"; exit 1; }
echo "tiny ladder on the GPU (trainer=auto): $(( $(date +%s) - start )) s wall"
cp "$GPU_WORK/run/report.md" "$GPU_WORK/run/summary.json" "$OUT/"
cat "$GPU_WORK/run/report.md"
