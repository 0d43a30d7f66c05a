#!/usr/bin/env bash
# bf16 against AWQ W4A16 on the GPU machine (see scripts/benchmarks/bench_quantize.py). The image lacks llm-compressor and its
# needs; their wheels travel in a folder of their own (docs/quantization.md has the measured command):
#   run(command="bash scripts/device_bench_quantize.sh .whl .carry/export-wheels", carry=[".whl", ".carry/export-wheels"])
# Wheels (llmcompressor 0.14.0.1, compressed-tensors 0.19.0, loguru, pydantic + pydantic-core, annotated-types,
# typing-inspection): the pip download command in /work/.library/device/README.md, one version each.
set -euo pipefail
for folder in "${@:-.whl}"; do
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$folder"/*.whl
done
export PYTHONPATH=/tmp/site:$PWD:$PWD/scripts PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
python3 -m scripts.benchmarks.bench_quantize --out "${OUT:-.}" ${BENCH_ARGS:-}
