#!/usr/bin/env bash
# Issue 31 item 5: neither / DPO / GRPO / both on the tiny reader, same pages and steps, per seed. Each arm starts from
# a copy of one finished tiny_reader run of that seed (runs/tiny_reader_seed<S>, from ladder_seeds.sh), so the base,
# general-OCR and structured points are the same files in every arm and only the alignment stages run:
#   bash scripts/experiments/grpo_comparison.sh [SEEDS...]        # default: 0 1 2; then the table (ladder_table.py)
# DPO_REASONS: the DPO arm's mining reasons (default: the recipe's); DPO_LR its learning rate (default: the recipe's).
# OMP_NUM_THREADS=1 unless set: on a shared 2-core machine two threads per run stall each other.
set -euo pipefail
cd "$(dirname "$0")/../.."
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
dpo_extra=()
[ -n "${DPO_REASONS:-}" ] && dpo_extra+=("stages.dpo.mining.reasons=$DPO_REASONS")
[ -n "${DPO_LR:-}" ] && dpo_extra+=("stages.dpo.optimization.learning_rate=$DPO_LR")
mkdir -p runs/grpo_cmp
for seed in "${@:-0 1 2}"; do
  for s in $seed; do
    source_run=runs/tiny_reader_seed$s
    [ -f "$source_run/02_structured/stage.json" ] || { echo "$source_run has no structured point: run ladder_seeds.sh $s"; exit 1; }
    for arm in dpo grpo both; do
      case $arm in
        dpo)  switch=("${dpo_extra[@]}") ;;
        grpo) switch=(stages.grpo.enabled=true stages.dpo=null) ;;
        both) switch=(stages.grpo.enabled=true "${dpo_extra[@]}") ;;
      esac
      out=runs/grpo_cmp/${arm}_seed$s
      rm -rf "$out"; mkdir -p "$out"
      cp -r "$source_run"/00_base "$source_run"/01_general_ocr "$source_run"/02_structured "$source_run"/data "$out"/
      cp "$source_run"/run.json "$out"/ 2>/dev/null || true
      start=$SECONDS
      python -m dharma_train recipe=tiny trainer.seed="$s" data.synthetic.seed="$s" '~stages.quantize' \
        '~stages.export' stages.grpo.optimization.max_steps=20 'pipeline.exempt=[dpo,grpo]' "${switch[@]}" \
        output_dir="$out" hydra.run.dir="$out/hydra" > "$out.log" 2>&1 || { tail -20 "$out.log"; exit 1; }
      echo "$arm seed $s: $((SECONDS - start)) s"
    done
  done
done
python -m scripts.experiments.tiny_reader.ladder_table runs/grpo_cmp
