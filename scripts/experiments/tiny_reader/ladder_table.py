"""One line per ladder point of every run under a folder (summary.json), for sweeps and seed sets of the tiny reader.

python -m scripts.experiments.tiny_reader.ladder_table runs/   # run folders under runs/, each with a summary.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

METRICS = ("cer", "json_valid_rate", "schema_valid_rate", "degeneration_rate")


def rows(root: Path) -> list[str]:
    """'run stage verdict cer=... json=...' for each point; a run without a summary says so."""
    lines = []
    for folder in sorted(path for path in root.iterdir() if path.is_dir()):
        summary = folder / "summary.json"
        if not summary.is_file():
            lines.append(f"{folder.name}: no summary.json (did not finish)")
            continue
        for entry in json.loads(summary.read_text())["entries"]:
            metrics = entry["metrics"]
            values = " ".join(f"{name}={metrics[name]:.3f}" for name in METRICS if name in metrics)
            lines.append(f"{folder.name} {entry['stage']} {entry['gate']['verdict']} {values}")
    return lines


if __name__ == "__main__":
    print("\n".join(rows(Path(sys.argv[1]))))
