#!/usr/bin/env bash
# After a GPU call of scripts/experiments/tiny_reader/device_ctc_reader.sh: its checkpoint replaces the repository's (git keeps the old one)
# and its curve and log are kept under docs/experiments/tiny-reader/ as gpu-call-N.*.
#   bash scripts/experiments/tiny_reader/unpack_ctc_reader.sh FILES_AT N          # checkpoint with its own model/
#   SHIP=1 bash scripts/experiments/tiny_reader/unpack_ctc_reader.sh FILES_AT N   # its model becomes the shipped reader
# SHIP=1 moves model/ into dharma_train/models/tiny_reader (the card, README.md, stays: update it) and the checkpoint's
# state.json names that folder (model_dir), so the repository holds the weights once.
set -euo pipefail
FILES=$1; N=$2; DOCS=docs/experiments/tiny-reader; PACKAGE=dharma_train/models/tiny_reader
rm -rf "$DOCS/checkpoint" && mkdir -p "$DOCS/checkpoint"
cat "$FILES"/checkpoint.tar.* | tar -x -C "$DOCS/checkpoint"
if [ "${SHIP:-0}" = 1 ]; then
  find "$PACKAGE" -mindepth 1 ! -name README.md -delete
  mv "$DOCS/checkpoint/model/"* "$PACKAGE/" && rmdir "$DOCS/checkpoint/model"
  python3 - "$DOCS/checkpoint/state.json" "$PACKAGE" <<'PY'
import json, sys
path, package = sys.argv[1:]
state = json.load(open(path)); state["model_dir"] = package
open(path, "w").write(json.dumps(state, indent=2, ensure_ascii=False))
PY
fi
# device.txt: gpu.sh's preamble (the GPU and the versions)
for name in curve.jsonl train.log run.json device.txt; do cp "$FILES/$name" "$DOCS/gpu-call-$N.${name#*.}"; done
mv "$DOCS/gpu-call-$N.jsonl" "$DOCS/gpu-call-$N.curve.jsonl"
cat "$DOCS/gpu-call-$N.curve.jsonl" >> "$DOCS/curve.jsonl"
ls -la "$DOCS/checkpoint" "$PACKAGE"
