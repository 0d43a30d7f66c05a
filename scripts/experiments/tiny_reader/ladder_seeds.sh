#!/usr/bin/env bash
# The tiny_reader recipe (the ladder on the shipped reader) on three seeds, one after the other, on this machine's CPU;
# each run's summary and report stay in runs/tiny_reader_seed<S>/, and one line per point is printed at the end:
#   bash scripts/experiments/tiny_reader/ladder_seeds.sh [SEEDS...]   # default: 0 1 2
set -euo pipefail
cd "$(dirname "$0")/../../.."
for seed in "${@:-0 1 2}"; do
  for s in $seed; do
    out=runs/tiny_reader_seed$s
    rm -rf "$out"; mkdir -p runs
    /usr/bin/time -f "seed $s: %e s" python -m dharma_train recipe=tiny trainer.seed=$s data.synthetic.seed=$s \
      output_dir=$out hydra.run.dir=$out/hydra > "$out.log" 2>&1 || { tail -20 "$out.log"; exit 1; }
    tail -1 "$out.log"
  done
done
python3 - "$@" <<'PY'
import json, pathlib
for folder in sorted(pathlib.Path("runs").glob("tiny_reader_seed*")):
    if not (folder / "summary.json").is_file():
        continue
    for e in json.loads((folder / "summary.json").read_text())["entries"]:
        m = e["metrics"]
        print(folder.name, e["stage"], e["gate"]["verdict"], *(f"{k}={m[k]:.3f}" for k in
              ("cer", "quality_score", "json_valid_rate", "schema_valid_rate", "degeneration_rate")))
PY
