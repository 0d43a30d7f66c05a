"""Compare finished runs stage by stage: one row per (base, evaluated point), as markdown, CSV and plots.

Reads only each run's summary.json, so it works on an ablation's base folders, on a Hydra multirun's job folders,
or on any runs made earlier:

    python -m dharma_train.reporting.comparison runs/qwen runs/nanonets --out runs/comparison
    python -m dharma_train.reporting.comparison qwen=runs/a nanonets=runs/b --out runs/comparison
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from collections.abc import Mapping
from pathlib import Path

from dharma_train.errors import DataError
from dharma_train.files import write_text_atomically

# (column, metric key, markdown format): higher quality and score are better; lower CER, degeneration and cost.
METRICS = [
    ("quality", "quality_score", "{:.3f}"),
    ("paper_score", "paper_score", "{:.3f}"),
    ("cer", "cer", "{:.3f}"),
    ("degeneration", "degeneration_rate", "{:.1%}"),
    ("paper_degeneration", "paper_degeneration_rate", "{:.1%}"),
    ("cost_per_million_pages", "cost_per_million_pages", "${:,.0f}"),
]
FAMILY_METRICS = [("quality", "quality_score", "{:.3f}"), ("degeneration", "degeneration_rate", "{:.1%}")]
PLOTS = [("quality", "quality score by stage (higher is better)", "comparison_scores.png"),
         ("degeneration", "degeneration rate by stage (lower is better)", "comparison_degeneration.png")]


def read_summary(run_dir: str | Path) -> dict:
    """A run's summary.json; a missing or unreadable one is a DataError naming the file."""
    path = Path(run_dir) / "summary.json"
    if not path.is_file():
        raise DataError(f"{path} does not exist: is {run_dir} a dharma_train run folder?")
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise DataError(f"{path}: not valid JSON ({error.msg})") from None
    if not isinstance(summary.get("entries"), list):
        raise DataError(f"{path}: no 'entries' list")
    return summary


def compare(run_dirs: Mapping[str, str | Path]) -> list[dict]:
    """One row per base and evaluated point (base, then each stage), with the metrics METRICS and per family."""
    rows = []
    for base, folder in run_dirs.items():
        for entry in read_summary(folder)["entries"]:
            metrics = entry["metrics"]
            row = {"base": base, "stage": entry["stage"], "kind": entry["kind"],
                   "gate": entry.get("gate", {}).get("verdict", "")}
            row.update({column: metrics.get(key) for column, key, _ in METRICS})
            for family, values in sorted(metrics.get("by_family", {}).items()):
                row.update({f"{family}_{column}": values.get(key) for column, key, _ in FAMILY_METRICS})
            row["train_seconds"] = entry.get("train", {}).get("wall_seconds")
            row["skipped"] = entry.get("train", {}).get("skipped", "")
            rows.append(row)
    return rows


def stage_order(rows: list[dict]) -> list[str]:
    """Every evaluated point once, in the order runs met them (a base that skips a stage leaves a gap)."""
    order: list[str] = []
    for row in rows:
        if row["stage"] not in order:
            own = [r["stage"] for r in rows if r["base"] == row["base"]]
            earlier = own[: own.index(row["stage"])]
            position = max((order.index(s) + 1 for s in earlier if s in order), default=0)
            order.insert(position, row["stage"])
    return order


def columns(rows: list[dict]) -> list[str]:
    names: list[str] = []
    for row in rows:
        names += [key for key in row if key not in names]
    return names


def to_csv(rows: list[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns(rows), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def to_markdown(rows: list[dict], plots: list[str] | None = None) -> str:
    """The main table (one row per base and point), then per-family quality and degeneration."""
    formats = {column: fmt for column, _, fmt in METRICS}
    formats.update({c: fmt for c in columns(rows) for suffix, _, fmt in FAMILY_METRICS if c.endswith(f"_{suffix}")
                    and c not in formats})
    main = ["base", "stage", "kind"] + [column for column, _, _ in METRICS] + ["gate"]
    families = [c for c in columns(rows) if c not in main and c in formats]
    lines = ["# Comparison of bases", "",
             "Every base went through the same stages and was evaluated on the same pages after each one "
             "(a blank stage: that base skipped it). Formulas: docs/evaluation.md.", ""]
    lines += _table(main, [[_cell(row.get(c), formats.get(c)) for c in main] for row in rows])
    if families:
        lines += ["", "## Per data family", ""]
        lines += _table(["base", "stage"] + families,
                        [[row["base"], row["stage"]] + [_cell(row.get(c), formats[c]) for c in families]
                         for row in rows])
    rejected = [f"- `{row['base']}` / `{row['stage']}`" for row in rows if row.get("gate") == "rejected"]
    if rejected:
        lines += ["", "## Stages the gate rejected (each base went on from the point before them)", ""] + rejected
    skipped = [f"- `{row['base']}` / `{row['stage']}`: {row['skipped']}" for row in rows if row.get("skipped")]
    if skipped:
        lines += ["", "## Stages that passed their input on untrained", ""] + skipped
    if plots:
        lines += ["", "## Plots", ""] + [f"![{Path(p).stem}]({p})" for p in plots]
    return "\n".join(lines) + "\n"


def write_comparison(rows: list[dict], out_dir: str | Path) -> list[Path]:
    """comparison.md, comparison.csv and the two plots (one line per base over the stages) in out_dir."""
    from dharma_train.reporting.plots import plot_by_base

    out_dir = Path(out_dir)
    points = stage_order(rows)
    plots = []
    for column, title, name in PLOTS:
        lines = {base: [_value(rows, base, stage, column) for stage in points]
                 for base in dict.fromkeys(row["base"] for row in rows)}
        plots.append(Path(plot_by_base(points, lines, title, out_dir / name)).name)
    return [write_text_atomically(out_dir / "comparison.csv", to_csv(rows)),
            write_text_atomically(out_dir / "comparison.md", to_markdown(rows, plots)),
            *(out_dir / p for p in plots)]


def _value(rows: list[dict], base: str, stage: str, column: str):
    return next((row.get(column) for row in rows if row["base"] == base and row["stage"] == stage), None)


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + ["| " + " | ".join(r) + " |" for r in rows]


def _cell(value, fmt: str | None) -> str:
    if value is None or value == "":
        return ""
    return fmt.format(value) if fmt else str(value)


def parse_runs(arguments: list[str]) -> dict[str, Path]:
    """`NAME=FOLDER` or `FOLDER` (named after the folder) per argument."""
    runs = {}
    for argument in arguments:
        name, _, folder = argument.rpartition("=") if "=" in argument else ("", "", argument)
        runs[name or Path(folder).name] = Path(folder)
    return runs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dharma_train.reporting.comparison", description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="run folders holding summary.json, each FOLDER or NAME=FOLDER")
    parser.add_argument("--out", default="comparison", help="where comparison.md/.csv and the plots go")
    args = parser.parse_args(argv)
    try:
        written = write_comparison(compare(parse_runs(args.runs)), args.out)
    except DataError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print((Path(args.out) / "comparison.md").read_text(encoding="utf-8"))
    print("wrote " + ", ".join(str(p) for p in written))
    return 0


if __name__ == "__main__":
    sys.exit(main())
