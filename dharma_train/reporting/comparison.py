"""Compare finished runs stage by stage: one row per (base, evaluated point), as markdown, CSV and plots.

Reads only each run's summary.json, so it works on an ablation (its folder stands for its bases' folders), on a
Hydra multirun's job folders, or on any runs made earlier:

    python -m dharma_train.reporting.comparison runs/qwen runs/nanonets --output-dir runs/comparison
    python -m dharma_train.reporting.comparison qwen=runs/a nanonets=runs/b --output-dir runs/comparison

comparison.md says whether the runs were evaluated on the same pages, by the pages' content fingerprints.
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
from dharma_train.gate import Verdict
from dharma_train.run_folder import COMPARISON_CSV, COMPARISON_MD, RunFolder
from dharma_train.run_paths import run_resolved

# (column, metric key, markdown format): higher quality and score are better; lower CER, degeneration and cost.
METRICS = [
    ("quality", "quality_score", "{:.3f}"),
    ("paper_score", "paper_score", "{:.3f}"),
    ("cer", "cer", "{:.3f}"),
    ("json_valid", "json_valid_rate", "{:.0%}"),
    ("schema_valid", "schema_valid_rate", "{:.0%}"),
    ("degeneration", "degeneration_rate", "{:.1%}"),
    ("paper_degeneration", "paper_degeneration_rate", "{:.1%}"),
    ("cost_per_million_pages", "cost_per_million_pages", "${:,.0f}"),
]
FAMILY_METRICS = [("quality", "quality_score", "{:.3f}"), ("degeneration", "degeneration_rate", "{:.1%}")]
PLOTS = [("quality", "quality score by stage (higher is better)", "comparison_scores.png"),
         ("degeneration", "degeneration rate by stage (lower is better)", "comparison_degeneration.png")]


def read_summary(run_dir: str | Path) -> dict:
    """A run's summary.json, its model paths resolved against where the run folder is now; a missing or unreadable
    one is a DataError naming the file."""
    path = RunFolder(run_dir).summary
    if not path.is_file():
        raise DataError(f"{path} does not exist: is {run_dir} a dharma_train run folder? (An ablation's folder holds "
                        "one run folder per base, each with its summary.json, once that base has evaluated a point: "
                        "pass the ablation's folder or those, as NAME=FOLDER.)")
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise DataError(f"{path}: not valid JSON ({error.msg})") from None
    if not isinstance(summary.get("entries"), list):
        raise DataError(f"{path}: no 'entries' list")
    return run_resolved(summary, Path(run_dir))


def evaluation_pages_folder(run_dir: str | Path) -> Path | None:
    """The page folder a run evaluated on: its loaded or generated eval split, or the folder its config named."""
    run_dir = Path(run_dir)
    record = RunFolder(run_dir).run_record
    named = None
    if record.is_file():
        named = (json.loads(record.read_text(encoding="utf-8")).get("config", {}).get("data") or {}).get("eval")
    candidates = [run_dir / "data" / "loaded" / "eval", run_dir / "data" / "eval"] + ([Path(named)] if named else [])
    return next((folder for folder in candidates if (folder / "pages.jsonl").is_file()), None)


def evaluation_pages(run_dirs: Mapping[str, str | Path]) -> dict[str, dict | None]:
    """Per run: the eval folder, its page count, ids and content fingerprint (None where no folder is found)."""
    from dharma_train.data.pages import load_pages
    from dharma_train.manifest import pages_fingerprint

    found = {}
    for name, run_dir in run_dirs.items():
        folder = evaluation_pages_folder(run_dir)
        if folder is None:
            found[name] = None
            continue
        pages = load_pages(folder)
        found[name] = {"folder": str(folder), "pages": len(pages), "ids": [page.id for page in pages],
                       "fingerprint": pages_fingerprint(pages)}
    return found


def same_pages_sentence(pages: Mapping[str, dict | None]) -> str:
    """What the comparison can claim about the evaluation pages, checked by their content fingerprints."""
    unknown = [name for name, info in pages.items() if info is None]
    if unknown:
        return (f"Whether every base was evaluated on the same pages is not known: no evaluation page folder was "
                f"found for {', '.join(unknown)}.")
    prints = {info["fingerprint"] for info in pages.values()}
    if len(prints) == 1:
        info = next(iter(pages.values()))
        return (f"Every base was evaluated on the same {info['pages']} pages after each point (content "
                f"fingerprint {info['fingerprint']}).")
    first_name, first = next(iter(pages.items()))
    differences = []
    for name, info in list(pages.items())[1:]:
        if info["fingerprint"] == first["fingerprint"]:
            continue
        only_first = len(set(first["ids"]) - set(info["ids"]))
        only_this = len(set(info["ids"]) - set(first["ids"]))
        shared = "same ids, different content" if not (only_first or only_this) else \
            f"{only_first} ids only in {first_name}, {only_this} only in {name}"
        differences.append(f"{name}: {info['pages']} pages in {info['folder']} ({shared})")
    return (f"WARNING: the bases were NOT evaluated on the same pages, so their numbers are not directly "
            f"comparable. {first_name}: {first['pages']} pages in {first['folder']}; " + "; ".join(differences) + ".")


def compare(run_dirs: Mapping[str, str | Path]) -> list[dict]:
    """One row per base and evaluated point (base, then each stage), with the metrics METRICS and per family."""
    rows = []
    for base, folder in run_dirs.items():
        for entry in read_summary(folder)["entries"]:
            metrics = entry["metrics"]
            row = {"base": base, "stage": entry["stage"], "kind": entry["kind"], "gate": Verdict.of(entry).outcome}
            row.update({column: metrics.get(key) for column, key, _ in METRICS})
            for family, values in sorted(metrics.get("by_family", {}).items()):
                row.update({f"{family}_{column}": values.get(key) for column, key, _ in FAMILY_METRICS})
            row["train_seconds"] = entry.get("train", {}).get("wall_seconds")
            row["skipped"] = Verdict.of(entry).reason or ""
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


def to_markdown(rows: list[dict], plots: list[str] | None = None,
                pages: Mapping[str, dict | None] | None = None) -> str:
    """The main table (one row per base and point), then per-family quality and degeneration."""
    formats = {column: fmt for column, _, fmt in METRICS}
    formats.update({c: fmt for c in columns(rows) for suffix, _, fmt in FAMILY_METRICS if c.endswith(f"_{suffix}")
                    and c not in formats})
    main = ["base", "stage", "kind"] + [column for column, _, _ in METRICS] + ["gate"]
    families = [c for c in columns(rows) if c not in main and c in formats]
    checked = same_pages_sentence(pages) if pages else "The evaluation pages were not checked."
    lines = ["# Comparison of bases", "",
             f"Each base went through the stages shown (a blank stage: that base skipped it). {checked} "
             "Formulas: docs/evaluation.md.", ""]
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


def write_comparison(rows: list[dict], out_dir: str | Path,
                     run_dirs: Mapping[str, str | Path] | None = None) -> list[Path]:
    """comparison.md, comparison.csv and the two plots (one line per base over the stages) in out_dir; given the
    run folders, comparison.md says whether their evaluation pages are the same, by content."""
    from dharma_train.reporting.plots import plot_by_base

    out_dir = Path(out_dir)
    points = stage_order(rows)
    plots = []
    bases = list(dict.fromkeys(row["base"] for row in rows))
    verdicts = {base: [_value(rows, base, stage, "gate") for stage in points] for base in bases}
    for column, title, name in PLOTS:
        lines = {base: [_value(rows, base, stage, column) for stage in points] for base in bases}
        plots.append(Path(plot_by_base(points, lines, title, out_dir / name, verdicts)).name)
    return [write_text_atomically(out_dir / COMPARISON_CSV, to_csv(rows)),
            write_text_atomically(out_dir / COMPARISON_MD,
                                  to_markdown(rows, plots, evaluation_pages(run_dirs) if run_dirs else None)),
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
    """`NAME=FOLDER` or `FOLDER` (named after the folder) per argument; an ablation's folder stands for its bases."""
    runs: dict[str, Path] = {}
    for argument in arguments:
        name, _, folder = argument.rpartition("=") if "=" in argument else ("", "", argument)
        bases = ablation_bases(Path(folder))
        if not bases:
            runs[name or Path(folder).name] = Path(folder)
        prefix = f"{name or Path(folder).name}/" if len(arguments) > 1 else ""
        runs.update({prefix + base: base_folder for base, base_folder in bases.items()})
    return runs


def ablation_bases(folder: Path) -> dict[str, Path]:
    """An ablation folder's base runs (it has no summary.json of its own, its bases' folders have one), by name;
    empty for any other folder."""
    if not folder.is_dir() or RunFolder(folder).summary.is_file():
        return {}
    return {sub.name: sub for sub in sorted(folder.iterdir()) if RunFolder(sub).summary.is_file()}


def main(argv: list[str] | None = None) -> int:
    from dharma_train.cli.formatting import DefaultsHelpFormatter

    parser = argparse.ArgumentParser(prog="python -m dharma_train.reporting.comparison",
                                     description=__doc__.splitlines()[0], formatter_class=DefaultsHelpFormatter)
    parser.add_argument("runs", nargs="+", help="run folders holding summary.json, each FOLDER or NAME=FOLDER; an "
                        "ablation's folder stands for its bases' run folders")
    parser.add_argument("--output-dir", "--out", dest="out", default="comparison",
                        help="where comparison.md/.csv and the plots go (default: %(default)s)")
    args = parser.parse_args(argv)
    try:
        runs = parse_runs(args.runs)
        for argument in args.runs:
            if bases := ablation_bases(Path(argument.rpartition("=")[2])):
                print(f"{argument}: an ablation's folder, compared as its bases: "
                      + ", ".join(f"{name}={folder}" for name, folder in bases.items()), file=sys.stderr)
        written = write_comparison(compare(runs), args.out, runs)
    except DataError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print((Path(args.out) / COMPARISON_MD).read_text(encoding="utf-8"))
    print("wrote " + ", ".join(str(p) for p in written))
    return 0


if __name__ == "__main__":
    sys.exit(main())
