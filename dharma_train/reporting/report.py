"""report.md: the run's stage-over-stage tables and plots, readable without any tooling.

"Gain" is a stage's change over the point before it (DharmaOCR's alignment gain); "vs base" is the change since
the starting model. Scores rise when better; CER and degeneration fall when better.
"""

from __future__ import annotations

from pathlib import Path

from dharma_train.files import write_text_atomically
from dharma_train.gate import Verdict
from dharma_train.run_paths import shown

# (header, metric key, format)
QUALITY = [
    ("quality", "quality_score", "{:.3f}"),
    ("paper score", "paper_score", "{:.3f}"),
    ("CER", "cer", "{:.3f}"),
    ("WER", "wer", "{:.3f}"),
    ("JSON valid", "json_valid_rate", "{:.0%}"),
    ("schema valid", "schema_valid_rate", "{:.0%}"),
    ("misplaced fields", "placement_error_rate", "{:.0%}"),
    ("degeneration", "degeneration_rate", "{:.1%}"),
    ("paper degeneration", "paper_degeneration_rate", "{:.1%}"),
]
SPEED = [
    ("pages/s", "pages_per_second", "{:.2f}"),
    ("new tokens/s", "new_tokens_per_second", "{:.0f}"),
    ("p50 latency s", "latency_p50_seconds", "{:.2f}"),
    ("p95 latency s", "latency_p95_seconds", "{:.2f}"),
    ("hit token limit", "token_limit_rate", "{:.0%}"),
    ("loops stopped early", "pages_stopped_early", "{}"),
    ("cost per M pages", "cost_per_million_pages", "${:,.0f}"),
    ("weights MB", "weights_megabytes", "{:,.1f}"),
    ("model memory GiB", "model_memory_gib", "{:.3f}"),
    ("peak GPU GiB", "peak_memory_gib", "{:.1f}"),
    ("linears ran on", "decode_backend", "{}"),
]
GAINS = [("quality", "quality_score"), ("paper score", "paper_score"), ("CER", "cer"),
         ("degeneration", "degeneration_rate")]


def render_report(summary: dict, plots: list[str] | None = None, provenance: dict | None = None) -> str:
    """Markdown: quality per point, gains over the previous point and the base, speed and cost, per family."""
    entries = summary["entries"]
    settings = summary["evaluation"]
    lines = [f"# dharma_train run: {summary['run']}", "",
             f"Evaluated on {entries[0]['metrics']['pages'] if entries else 0} held-out pages, task "
             f"`{settings['task']}`, greedy decoding, at most {settings['max_new_tokens']} new tokens per page. "
             f"Formulas: docs/evaluation.md.", ""]
    lines += _gate_lines(summary)
    lines += ["## Quality", ""]
    lines += _table(["point", "kind", "gate"] + [h for h, _, _ in QUALITY],
                    [[e["stage"], e["kind"], _gate_cell(e)] + [_cell(e["metrics"], k, f) for _, k, f in QUALITY]
                     for e in entries])
    lines += ["", "## What each stage gained", "", "Gain: change over the point the stage started from (after a "
              "rejected stage, the point before it). vs base: change since the base.", ""]
    header = ["point", "from"] + [f"{h} gain" for h, _ in GAINS] + [f"{h} vs base" for h, _ in GAINS]
    rows = []
    by_point = {entry["stage"]: entry for entry in entries}
    for index, entry in enumerate(entries[1:], start=1):
        start = by_point.get(Verdict.of(entry).against, entries[index - 1])  # older summaries: row above
        before, base, now = start["metrics"], entries[0]["metrics"], entry["metrics"]
        rows.append([entry["stage"], start["stage"]] + [_delta(now, before, k) for _, k in GAINS]
                    + [_delta(now, base, k) for _, k in GAINS])
    lines += _table(header, rows) if rows else ["(no stage yet)"]
    lines += ["", "## Speed and cost", "",
              f"Cost per million pages at ${settings.get('price_per_hour', 0):.2f} per hour of the evaluating "
              "machine; degenerate pages included, as they hold their batch to the token bound.", ""]
    lines += _table(["point"] + [h for h, _, _ in SPEED] + ["train loss", "train s"],
                    [[e["stage"]] + [_cell(e["metrics"], k, f) for _, k, f in SPEED]
                     + [_number(e["train"].get("train_loss"), "{:.3f}"),
                        _number(e["train"].get("wall_seconds"), "{:.0f}")] for e in entries])
    lines += ["", "## Per answer field", "", "CER and WER of each JSON field against the same field of the reference, "
              "over the pages where the field is present.", ""]
    fields = ("header", "margin", "footer", "text")
    lines += _table(["point"] + [f"{field} {rate}" for field in fields for rate in ("CER", "WER")],
                    [[e["stage"]] + [_cell(e["metrics"], f"{field}_{rate}", "{:.3f}")
                                     for field in fields for rate in ("cer", "wer")] for e in entries])
    lines += ["", "## Per data family", ""]
    families = sorted({family for e in entries for family in e["metrics"].get("by_family", {})})
    header = ["point"] + [f"{family} {name}" for family in families for name in ("quality", "CER", "degeneration")]
    lines += _table(header, [[e["stage"]] + [_cell(e["metrics"]["by_family"].get(family, {}), key, fmt)
                                             for family in families
                                             for key, fmt in (("quality_score", "{:.3f}"), ("cer", "{:.3f}"),
                                                              ("degeneration_rate", "{:.1%}"))]
                             for e in entries])
    lines += _pairs_section(entries)
    lines += rewards_section(entries)
    if plots:
        lines += ["", "## Plots", ""] + [f"![{Path(p).stem}]({p})" for p in plots]
    lines += _provenance_lines(provenance or {})
    lines += ["", "## Models", "", "Paths inside the run are relative to this folder.", ""]
    lines += [f"- `{e['stage']}`: {shown(e['model'])}" + _skipped(e) for e in entries]
    lines += [f"- `{e['stage']}` ({e['kind']}): {shown(e['model'])} (not evaluated again: same weights as the point "
              "before)"
              for e in summary.get("not_evaluated", [])] + [""]
    if summary.get("notes"):  # stages made on another machine, or on two (manifest.machine_note)
        lines += ["## Machines", ""] + [f"- {note}" for note in summary["notes"]] + [""]
    return "\n".join(lines)


def _gate_cell(entry: dict) -> str:
    gate = Verdict.of(entry).outcome
    return f"**{gate}**" if gate in ("rejected", "skipped") else gate


def _gate_lines(summary: dict) -> list[str]:
    """The stage gate's outcome, stated before any table: which stages were kept, skipped or rejected, and why."""
    from dharma_train.gate import describe

    gated = [e for e in summary["entries"] if Verdict.of(e).gated]
    if not gated:
        return []
    skipped = [e for e in gated if Verdict.of(e).outcome == "skipped"]
    rejected = [e for e in gated if Verdict.of(e).outcome == "rejected"]
    warned = [e for e in gated if Verdict.of(e).outcome == "warned"]
    kept = [e["stage"] for e in gated if e not in skipped + rejected]
    passed = f"skipped {', '.join(e['stage'] for e in skipped)}; " if skipped else ""
    lines = [f"**Stage gate** (`pipeline.on_regression={summary.get('gate', {}).get('on_regression', 'keep_best')}`): "
             f"kept {', '.join(kept) or 'none'}; {passed}rejected {', '.join(e['stage'] for e in rejected) or 'none'}. "
             f"The run carries on from (and exports) `{summary.get('final_point', gated[-1]['stage'])}`.", ""]
    lines += [f"- **stage {e['stage']} skipped: it passed its input on untrained because {Verdict.of(e).reason}; its row "
              "repeats the metrics of the point before it, not evaluated again**" for e in skipped]
    lines += [f"- **{describe(e)}**" for e in rejected + warned]
    return lines + ([""] if skipped or rejected or warned else [])


def write_report(summary: dict, path: Path, plots: list[str] | None = None,
                 provenance: dict | None = None) -> None:
    """report.md beside the run's own records (run.json, the load reports), which say how the run was made; or
    with the `provenance` a caller gives (dharma-evaluate: its pages' source and load report)."""
    from dharma_train.reporting.run_record import run_provenance

    provenance = run_provenance(path.parent) if provenance is None else provenance
    write_text_atomically(path, render_report(summary, plots, provenance))


def _provenance_lines(provenance: dict) -> list[str]:
    """The real command (with its overrides), the data sources, and the rows the loader skipped and why."""
    lines = []
    if provenance.get("command"):
        lines += [f"- command: `{provenance['command']}`"]
    lines += [f"- data: {source}" for source in provenance.get("sources", [])]
    lines += [f"- loaded: {line}" for line in provenance.get("loaded", [])]
    return ["", "## How this run was made", ""] + lines if lines else []


def _pairs_section(entries: list[dict]) -> list[str]:
    """What each preference stage trained on: mined answers and why they were rejected."""
    rows = []
    for e in entries:
        train = e.get("train", {})
        if "pairs" not in train:
            continue
        mining = train.get("mining", {})
        found = ", ".join(f"{k.removeprefix('found_')} {v}" for k, v in mining.items() if k.startswith("found_"))
        by_reason = ", ".join(f"{k} {v}" for k, v in mining.get("pairs_by_reason", {}).items())
        rows.append([e["stage"], str(train["pairs"]), "mined" if mining else "given or synthetic",
                     str(mining.get("generated", "")), found, by_reason])
    if not rows:
        return []
    return ["", "## Preference pairs", "", "Answers the input model generated while mining, what the detectors "
            "found in them, and the pairs kept (chosen: the ground truth).", ""] + _table(
        ["point", "pairs", "source", "answers generated", "found", "pairs by reason"], rows)


def rewards_section(entries: list[dict]) -> list[str]:
    """What each GRPO stage sampled and skipped, and each reward term's mean at its first and last logged step."""
    header, rows = reward_table(entries)
    if not rows:
        return []
    return ["", "## GRPO rewards", "", "Each term's mean over the answers sampled at the first and the last logged "
            "step (docs/grpo.md); groups whose answers all scored the same had no advantage and were skipped.",
            ""] + _table(header, rows)


def reward_table(entries: list[dict]) -> tuple[list[str], list[list[str]]]:
    """One row per GRPO stage: its counts, then `first -> last` for the reward and each term its record names."""
    records = [(entry["stage"], entry["train"]["grpo"]) for entry in entries if "grpo" in entry.get("train", {})]
    if not records:
        return [], []
    curves = [name for name in records[0][1]["curves"] if name != "step"]  # reward, then each term
    header = ["point", "groups", "skipped (zero variance)", "answers at the token bound", *curves]
    rows = [[stage, str(record["groups"]), str(record["zero_variance_groups"]),
             f"{record['hit_token_limit']} of {record['answers']}"]
            + [_first_to_last(record["curves"].get(name, [])) for name in curves] for stage, record in records]
    return header, rows


def _first_to_last(values: list) -> str:
    shown = [value for value in values if value is not None]
    return f"{shown[0]:.3f} → {shown[-1]:.3f}" if shown else ""


def _skipped(entry: dict) -> str:
    reason = Verdict.of(entry).reason
    return f" (stage skipped, model passed on: {reason})" if reason else ""


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + ["| " + " | ".join(r) + " |" for r in rows]


def _cell(metrics: dict, key: str, fmt: str) -> str:
    return _number(metrics.get(key), fmt)


def _number(value, fmt: str) -> str:
    return "" if value is None else fmt.format(value)


def _delta(now: dict, before: dict, key: str) -> str:
    if key not in now or key not in before:
        return ""
    return f"{now[key] - before[key]:+.3f}"
