#!/usr/bin/env bash
# Issue 29's CTC reader pretraining (scripts/pretrain_ctc_reader.py) for one GPU call: resumes from the repository's
# checkpoint (docs/experiments/tiny-reader/checkpoint) when there is one, trains MINUTES, and returns the new
# checkpoint as a tar split in 15 MiB pieces with its curve and log:
#   run(command="bash scripts/device_ctc_reader.sh", carry=[".whl"])      # from the repository root
# then, here: bash scripts/unpack_ctc_reader.sh <files_at>               # the checkpoint and curves into docs/
# Overrides: OUT, MINUTES (training and evaluation; saving adds seconds), CKPT, EXTRA (more script arguments).
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  || exit 1
export PYTHONPATH=/tmp/site:$PWD:$PWD/scripts PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 DHARMA_TRAIN_CACHE=/tmp/dharma_cache
OUT=${OUT:-/tmp/out}; MINUTES=${MINUTES:-8}; CKPT=${CKPT:-docs/experiments/tiny-reader/checkpoint}
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$OUT/device.txt"
python3 -c "import torch, transformers; print('torch', torch.__version__, '| transformers', transformers.__version__)" \
  | tee -a "$OUT/device.txt"
resume=""; [ -f "$CKPT/state.json" ] && resume="--resume $CKPT"
python3 scripts/pretrain_ctc_reader.py --out /tmp/work/run $resume --workers 14 --max-minutes "$MINUTES" ${EXTRA:-} \
  2>&1 | grep --line-buffered -v -e "Writing model shards" -e "it/s]" | tee "$OUT/train.log"
cp /tmp/work/run/curve.jsonl /tmp/work/run/run.json "$OUT/"
tar -C /tmp/work/run/checkpoint -cf - . | split -b 15m -d - "$OUT/checkpoint.tar."
ls -la "$OUT"
rm -rf /tmp/work /tmp/site /tmp/dharma_cache
