#!/usr/bin/env bash
# Issue 22's pretraining runs (scripts/experiments/tiny_reader/pretrain_reader.py) on the GPU machine, in one call: the embedded tiny shape
# and a 4.7 M-parameter shape side by side on one GPU (each far from filling it), the same curriculum, time-boxed.
#   run(command="bash scripts/experiments/tiny_reader/device_pretrain_reader.sh", carry=[".whl"])   # from the repository root
# Overrides: OUT, MINUTES, PHASES, LR, VISION_LR_SCALE. The 2026-12-01 call (docs/experiments/tiny-reader.md) was
#   MINUTES=2.0 PHASES=chars:300,words:600,lines:700,pages:800 LR=3e-3 VISION_LR_SCALE=3 bash scripts/experiments/tiny_reader/device_pretrain_reader.sh
# $OUT/<run>/ gets curve.jsonl (written as it goes, so a call cut short keeps it), run.json and model/.
set -uo pipefail
[ -n "${GPU_WORK:-}" ] || exec bash "$(dirname "$0")/../../gpu.sh" bash "$(realpath "$0")" "$@"  # the common preamble first
MINUTES=${MINUTES:-8}
PHASES=${PHASES:-glyph:600,chars:3000,words:4000,lines:4000,pages:4000}
SMALL='{"num_hidden_layers": 4, "hidden_size": 256, "intermediate_size": 768, "num_attention_heads": 8,
        "num_key_value_heads": 2, "vision_depth": 4, "vision_hidden_size": 128, "vision_intermediate_size": 384}'
common="--phases $PHASES --batch 256 --lr ${LR:-3e-4} --vision-lr-scale ${VISION_LR_SCALE:-1} --random-fraction 0.5 --eval-every 100000
        --eval-pages 16 --eval-crops 32 --page-pool 1024 --workers 7 --max-minutes $MINUTES"
python3 -m scripts.experiments.tiny_reader.pretrain_reader --out "$OUT/tiny" --work "$GPU_WORK/tiny" $common \
  > "$OUT/tiny.log" 2>&1 &
python3 -m scripts.experiments.tiny_reader.pretrain_reader --out "$OUT/small" --work "$GPU_WORK/small" $common \
  --shape "$SMALL" > "$OUT/small.log" 2>&1 &
wait
tail -n 12 "$OUT"/*.log   # scripts/gpu.sh removes $GPU_WORK on exit
