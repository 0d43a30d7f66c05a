#!/usr/bin/env bash
# Issue 29's CTC reader pretraining (scripts/experiments/tiny_reader/pretrain_ctc_reader.py) for one GPU call: resumes
# from the repository's checkpoint (docs/experiments/tiny-reader/checkpoint) when there is one, trains MINUTES, and
# returns the new checkpoint as a tar split in 15 MiB pieces with its curve and log:
#   run(command="bash scripts/experiments/tiny_reader/device_ctc_reader.sh", carry=[".whl"])   # from the checkout root
# then, here: bash scripts/experiments/tiny_reader/unpack_ctc_reader.sh <files_at> N   # the checkpoint and curves
# Overrides: OUT, MINUTES (training and evaluation; saving adds seconds), CKPT, EXTRA (more script arguments).
set -uo pipefail
[ -n "${GPU_WORK:-}" ] || exec bash "$(dirname "$0")/../../gpu.sh" bash "$(realpath "$0")" "$@"  # the common preamble first
MINUTES=${MINUTES:-8}; CKPT=${CKPT:-docs/experiments/tiny-reader/checkpoint}; RUN=$GPU_WORK/run
cp "$OUT/log.txt" "$OUT/device.txt" 2>/dev/null  # gpu.sh's preamble: the GPU and the versions
resume=""; [ -f "$CKPT/state.json" ] && resume="--resume $CKPT"
python3 -m scripts.experiments.tiny_reader.pretrain_ctc_reader --out "$RUN" $resume --workers 14 \
  --max-minutes "$MINUTES" ${EXTRA:-} 2>&1 | grep --line-buffered -v -e "Writing model shards" -e "it/s]" \
  | tee "$OUT/train.log"
cp "$RUN/curve.jsonl" "$RUN/run.json" "$OUT/"
tar -C "$RUN/checkpoint" -cf - . | split -b 15m -d - "$OUT/checkpoint.tar."
ls -la "$OUT"   # scripts/gpu.sh removes $GPU_WORK (the run, the model cache) on exit
