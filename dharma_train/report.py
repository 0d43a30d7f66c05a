"""report.md: the run's stage-over-stage table, readable without any tooling."""

from __future__ import annotations

from pathlib import Path

from dharma_train.files import write_text_atomically

COLUMNS = [  # (header, metric key, format); a Δ column follows each starred metric
    ("CER", "cer", "{:.3f}", True),
    ("JSON valid", "json_valid_rate", "{:.0%}", True),
    ("schema valid", "schema_valid_rate", "{:.0%}", False),
    ("degeneration", "degeneration_rate", "{:.1%}", True),
    ("hit token limit", "token_limit_rate", "{:.0%}", False),
    ("pages/s", "pages_per_second", "{:.2f}", False),
]


def render_report(summary: dict) -> str:
    """A markdown table, one row per evaluated point, with each stage's change over the point before."""
    header = ["point", "stage kind"]
    for title, _, _, with_delta in COLUMNS:
        header += [title, f"Δ {title}"] if with_delta else [title]
    header += ["train loss", "train s"]
    lines = [f"# dharma_train run: {summary['run']}", "",
             f"Evaluated on {_pages(summary)} pages, task `{summary['evaluation']['task']}`, "
             f"greedy decoding, at most {summary['evaluation']['max_new_tokens']} new tokens.", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    previous = None
    for entry in summary["entries"]:
        metrics = entry["metrics"]
        cells = [entry["stage"], entry["kind"]]
        for _, key, fmt, with_delta in COLUMNS:
            cells.append(fmt.format(metrics[key]))
            if with_delta:
                cells.append("" if previous is None else f"{metrics[key] - previous[key]:+.3f}")
        loss = entry["train"].get("train_loss")
        seconds = entry["train"].get("wall_seconds")
        cells += ["" if loss is None else f"{loss:.3f}", "" if seconds is None else f"{seconds:.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
        previous = metrics
    lines += ["", "CER: character error rate of the page's plain text (JSON answers are read field by field), "
              "after Unicode NFC and white-space folding; lower is better. Δ: change against the row above.",
              "Models: " + ", ".join(f"`{e['stage']}` → {e['model']}" for e in summary["entries"]), ""]
    return "\n".join(lines)


def write_report(summary: dict, path: Path) -> None:
    write_text_atomically(path, render_report(summary))


def _pages(summary: dict) -> int:
    return summary["entries"][0]["metrics"]["pages"] if summary["entries"] else 0
