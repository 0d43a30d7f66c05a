#!/usr/bin/env bash
# After a GPU call of scripts/experiments/tiny_reader/device_ctc_reader.sh: its checkpoint replaces the repository's (git keeps the old one)
# and its curve and log are kept under docs/experiments/tiny-reader/ as gpu-call-N.*.
#   bash scripts/experiments/tiny_reader/unpack_ctc_reader.sh FILES_AT N
set -euo pipefail
FILES=$1; N=$2; DOCS=docs/experiments/tiny-reader
rm -rf "$DOCS/checkpoint" && mkdir -p "$DOCS/checkpoint"
cat "$FILES"/checkpoint.tar.* | tar -x -C "$DOCS/checkpoint"
# device.txt: gpu.sh's preamble (the GPU and the versions)
for name in curve.jsonl train.log run.json device.txt; do cp "$FILES/$name" "$DOCS/gpu-call-$N.${name#*.}"; done
mv "$DOCS/gpu-call-$N.jsonl" "$DOCS/gpu-call-$N.curve.jsonl"
cat "$DOCS/gpu-call-$N.curve.jsonl" >> "$DOCS/curve.jsonl"
ls -la "$DOCS/checkpoint" "$DOCS/checkpoint/model"
