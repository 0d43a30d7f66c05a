#!/usr/bin/env bash
# The real nanonets_3b recipe, end to end on one GPU, on a 3B checkpoint folder laid out like the Hub's
# (dharma_train/models/hub_layout.py: Qwen's tokenizer class, vocabulary size and special-token ids, the stock
# processor and chat template; random weights), shortened so it fits a 10-minute call: few pages and steps, short
# answers. What it shows is the run itself on CUDA: every stage, the fast paths the stages pick on a GPU, and the
# report's speed-and-cost table with the quantized point decoded on the int4 kernel. Through the device tool:
#   run(command="bash scripts/device_recipe_3b.sh", carry=[".whl"])
# Extra arguments are more overrides. Writes report.md, summary.json, stage records and the log to $OUT.
set -euo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 DHARMA_TRAIN_CACHE=/tmp/dharma_cache
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$OUT/log.txt"
python3 -c "import torch, transformers, trl, peft, accelerate, llmcompressor, compressed_tensors; print('torch', torch.__version__, '| transformers', transformers.__version__, '| trl', trl.__version__, '| peft', peft.__version__, '| accelerate', accelerate.__version__, '| llmcompressor', llmcompressor.__version__, '| compressed-tensors', compressed_tensors.__version__)" | tee -a "$OUT/log.txt"
trap 'rm -rf /tmp/hub3b /tmp/run3b' EXIT  # ~30 GB of weights: the machine's disk is 64 GB
start=$(date +%s)
python3 -m dharma_train.models.hub_layout /tmp/hub3b --shape 3b 2>&1 | tail -1 | tee -a "$OUT/log.txt"
echo "checkpoint folder built in $(( $(date +%s) - start )) s: $(ls /tmp/hub3b | tr '\n' ' ')" | tee -a "$OUT/log.txt"
start=$(date +%s)
set +e
timeout ${RECIPE_TIMEOUT:-470} python3 -m dharma_train recipe=nanonets_3b model.path=/tmp/hub3b output_dir=/tmp/run3b \
  tracking=none trainer.checkpoint_every=0 \
  data.synthetic.train_pages=32 data.synthetic.eval_pages=32 \
  evaluation.max_new_tokens=128 evaluation.batch_size=32 \
  stages.structured.optimization.max_steps=4 stages.structured.optimization.gradient_accumulation=1 \
  stages.dpo.pairs=synthetic stages.dpo.optimization.max_steps=4 stages.dpo.optimization.gradient_accumulation=1 \
  stages.quantize.calibration_pages=32 "$@" > "$OUT/recipe.log" 2>&1
rc=$?
set -e
echo "recipe exit $rc after $(( $(date +%s) - start )) s" | tee -a "$OUT/log.txt"
tail -40 "$OUT/recipe.log"
cp /tmp/run3b/report.md /tmp/run3b/summary.json "$OUT/" 2>/dev/null || true
for record in /tmp/run3b/*/stage.json /tmp/run3b/*/metrics.json; do
  [ -f "$record" ] && cp "$record" "$OUT/$(basename "$(dirname "$record")")_$(basename "$record")"
done
du -sh /tmp/run3b/*/model 2>/dev/null | tee -a "$OUT/log.txt" || true
[ -f /tmp/run3b/report.md ] && sed -n '/## Speed/,/## Per answer/p' /tmp/run3b/report.md
exit $rc
