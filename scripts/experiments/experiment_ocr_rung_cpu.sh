#!/usr/bin/env bash
# The OCR-rung experiment (scripts/experiments/experiment_ocr_rung.py, docs/experiments/ocr-rung.md) at `--scale cpu`: the
# embedded tiny model's shape, every step on this machine's CPU, seeds one after another, arms one after another.
#   bash scripts/experiments/experiment_ocr_rung_cpu.sh            # WORK=runs/ocr_rung_cpu OUT=$WORK/results SEEDS="0 1"
set -euo pipefail
WORK=${WORK:-runs/ocr_rung_cpu}; OUT=${OUT:-$WORK/results}; SEEDS=${SEEDS:-"0 1"}
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
mkdir -p "$WORK/logs" "$OUT"
python -c "import platform, torch, transformers, peft, trl; print(platform.processor() or platform.machine(), '| torch', torch.__version__, '| transformers', transformers.__version__, '| peft', peft.__version__, '| trl', trl.__version__)"
start=$(date +%s)
for seed in $SEEDS; do
  python -m scripts.experiments.experiment_ocr_rung prepare --scale cpu --seed "$seed" --work "$WORK" > "$WORK/logs/prepare_seed$seed.log" 2>&1
  echo "seed $seed prepared after $(( $(date +%s) - start )) s"
  for arm in with_rung no_rung no_rung_budget; do
    python -m scripts.experiments.experiment_ocr_rung arm --arm "$arm" --scale cpu --seed "$seed" --work "$WORK" \
      > "$WORK/logs/${arm}_seed$seed.log" 2>&1
    echo "seed $seed $arm done after $(( $(date +%s) - start )) s"
    python -m scripts.experiments.experiment_ocr_rung compare --work "$WORK" --out "$OUT" > /dev/null 2>&1  # results so far
  done
done
python -m scripts.experiments.experiment_ocr_rung compare --work "$WORK" --out "$OUT"
echo "experiment wall: $(( $(date +%s) - start )) s"
