#!/usr/bin/env bash
# Issue 22's pretraining runs (scripts/pretrain_reader.py) on the GPU machine, in one call: the embedded tiny shape
# and a 4.7 M-parameter shape side by side on one GPU (each far from filling it), the same curriculum, time-boxed.
#   run(command="bash scripts/device_pretrain_reader.sh", carry=[".whl"])   # from the repository root
# Overrides: OUT, MINUTES, PHASES, LR, VISION_LR_SCALE. The 2026-12-01 call (docs/experiments/tiny-reader.md) was
#   MINUTES=2.0 PHASES=chars:300,words:600,lines:700,pages:800 LR=3e-3 VISION_LR_SCALE=3 bash scripts/device_pretrain_reader.sh
# $OUT/<run>/ gets curve.jsonl (written as it goes, so a call cut short keeps it), run.json and model/.
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 DHARMA_TRAIN_CACHE=/tmp/dharma_cache
OUT=${OUT:-/tmp/out}; MINUTES=${MINUTES:-8}
PHASES=${PHASES:-glyph:600,chars:3000,words:4000,lines:4000,pages:4000}
SMALL='{"num_hidden_layers": 4, "hidden_size": 256, "intermediate_size": 768, "num_attention_heads": 8,
        "num_key_value_heads": 2, "vision_depth": 4, "vision_hidden_size": 128, "vision_intermediate_size": 384}'
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
python3 -c "import torch, transformers; print('torch', torch.__version__, '| transformers', transformers.__version__)"
common="--phases $PHASES --batch 256 --lr ${LR:-3e-4} --vision-lr-scale ${VISION_LR_SCALE:-1} --random-fraction 0.5 --eval-every 100000
        --eval-pages 16 --eval-crops 32 --page-pool 1024 --workers 7 --max-minutes $MINUTES"
python3 scripts/pretrain_reader.py --out "$OUT/tiny" --work /tmp/work/tiny $common > "$OUT/tiny.log" 2>&1 &
python3 scripts/pretrain_reader.py --out "$OUT/small" --work /tmp/work/small $common --shape "$SMALL" \
  > "$OUT/small.log" 2>&1 &
wait
tail -n 12 "$OUT"/*.log
rm -rf /tmp/work
