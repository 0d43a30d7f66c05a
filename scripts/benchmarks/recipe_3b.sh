#!/usr/bin/env bash
# The real nanonets_3b recipe, end to end on one GPU, on a 3B checkpoint folder laid out like the Hub's
# (dharma_train/models/hub_layout.py: Qwen's tokenizer class, vocabulary size and special-token ids, the stock
# processor and chat template; random weights), shortened so it fits a 10-minute call: few pages and steps, short
# answers. What it shows is the run itself on CUDA: every stage, the fast paths the stages pick on a GPU, and the
# report's speed-and-cost table with the quantized point decoded on the int4 kernel. Through the device tool:
#   run(command="bash scripts/benchmarks/recipe_3b.sh", carry=[".whl"])
# Extra arguments are more overrides. Writes report.md, summary.json, stage records and the log to $OUT.
set -euo pipefail
[ -n "${GPU_WORK:-}" ] || exec bash "$(dirname "$0")/../gpu.sh" bash "$(realpath "$0")" "$@"  # the common preamble first
HUB=$GPU_WORK/hub3b RUN=$GPU_WORK/run3b  # ~30 GB of weights on a 64 GB disk: scripts/gpu.sh removes them on exit
start=$(date +%s)
python3 -m dharma_train.models.hub_layout "$HUB" --shape 3b 2>&1 | tail -1
echo "checkpoint folder built in $(( $(date +%s) - start )) s: $(ls "$HUB" | tr '\n' ' ')"
start=$(date +%s)
set +e
timeout ${RECIPE_TIMEOUT:-470} python3 -m dharma_train recipe=nanonets_3b model.path="$HUB" output_dir="$RUN" \
  tracking=none trainer.checkpoint_every=0 \
  data.synthetic.train_pages=32 data.synthetic.eval_pages=32 \
  evaluation.max_new_tokens=128 evaluation.batch_size=32 \
  stages.structured.optimization.max_steps=4 stages.structured.optimization.gradient_accumulation=1 \
  stages.dpo.pairs=synthetic stages.dpo.optimization.max_steps=4 stages.dpo.optimization.gradient_accumulation=1 \
  stages.quantize.calibration_pages=32 "$@" > "$OUT/recipe.log" 2>&1
rc=$?
set -e
echo "recipe exit $rc after $(( $(date +%s) - start )) s"
tail -40 "$OUT/recipe.log"
cp "$RUN/report.md" "$RUN/summary.json" "$OUT/" 2>/dev/null || true
for record in "$RUN"/*/stage.json "$RUN"/*/metrics.json; do
  [ -f "$record" ] && cp "$record" "$OUT/$(basename "$(dirname "$record")")_$(basename "$record")"
done
du -sh "$RUN"/*/model 2>/dev/null || true
[ -f "$RUN/report.md" ] && sed -n '/## Speed/,/## Per answer/p' "$RUN/report.md"
exit $rc
