"""PNG plots of a run or an ablation: score and degeneration by stage, one line per series; GRPO's reward curves."""

from __future__ import annotations

from pathlib import Path

from dharma_train.files import atomic_path

DODGE = 0.06  # stage-axis units between neighbouring bases, so identical lines do not hide each other
MARKERS = ("o", "s", "^", "D", "v", "P")
SERIES = [("quality_score", "quality score (higher is better)", "scores.png"),
          ("degeneration_rate", "degeneration rate (lower is better)", "degeneration.png")]


def plot_run(summary: dict, folder: str | Path) -> list[str]:
    """One figure per metric: the overall line and one per data family, across the evaluated points."""
    entries = summary["entries"]
    families = sorted({family for e in entries for family in e["metrics"].get("by_family", {})})
    written = []
    for key, title, name in SERIES:
        lines = {"all pages": [e["metrics"].get(key) for e in entries]}
        for family in families:
            lines[family] = [e["metrics"].get("by_family", {}).get(family, {}).get(key) for e in entries]
        written.append(plot_lines([e["stage"] for e in entries], lines, title, Path(folder) / name))
    for entry in entries:
        record = entry.get("train", {}).get("grpo")
        if record and record["curves"]["step"]:
            written.append(plot_rewards(record["curves"], f"{entry['stage']}: reward terms per step",
                                        Path(folder) / f"{entry['stage']}_rewards.png"))
    return [Path(p).name for p in written]


def plot_rewards(curves: dict[str, list], title: str, path: Path) -> str:
    """A GRPO stage's reward curves: the weighted reward and each term's mean, over training steps."""
    figure, axis = _axes()
    for label, values in curves.items():
        if label != "step":
            axis.plot(curves["step"], [float("nan") if v is None else v for v in values], marker=".",
                      linewidth=2.5 if label == "reward" else 1.2, label=label)
    return _finish(figure, axis, title, path, xlabel="training step")


def plot_lines(points: list[str], lines: dict[str, list[float | None]], title: str, path: Path) -> str:
    """A line per series over the stage axis; missing values leave gaps."""
    figure, axis = _axes()
    for label, values in lines.items():
        axis.plot(points, [float("nan") if v is None else v for v in values], marker="o",
                  linewidth=2.5 if label == "all pages" else 1.2, label=label)
    return _finish(figure, axis, title, path)


def plot_by_base(points: list[str], lines: dict[str, list[float | None]], title: str, path: Path,
                 verdicts: dict[str, list[str | None]] | None = None) -> str:
    """An ablation's figure: one line per base over the shared stage axis (see draw_by_base)."""
    figure, axis = _axes()
    draw_by_base(axis, points, lines, verdicts or {})
    return _finish(figure, axis, title, path)


def draw_by_base(axis, points: list[str], lines: dict[str, list[float | None]],
                 verdicts: dict[str, list[str | None]]) -> None:
    """Each base's line runs through the points it carried on from (dotted across stages it left out); a point the
    gate rejected is a red cross on a dashed branch off that line, since the base went on from the point before it;
    a skipped point (its input passed on) is hollow. Bases sit side by side around each stage, each with its own
    marker, so two identical lines stay visible."""
    count = len(lines)
    for index, (label, values) in enumerate(lines.items()):
        shift = DODGE * (index - (count - 1) / 2)
        marker = MARKERS[index % len(MARKERS)]
        marks = verdicts.get(label) or [None] * len(values)
        kept, rejected = kept_path(values, marks)
        (through,) = axis.plot([x + shift for x, _ in kept], [v for _, v in kept], linestyle=":", linewidth=1.2)
        color = through.get_color()
        for number, segment in enumerate(_consecutive(kept)):
            axis.plot([x + shift for x, _ in segment], [v for _, v in segment], marker=marker, linewidth=2,
                      color=color, label=label if number == 0 else None)
        skipped = [(x, v) for x, v in kept if marks[x] == "skipped"]
        if skipped:
            axis.plot([x + shift for x, _ in skipped], [v for _, v in skipped], linestyle="none", marker=marker,
                      markersize=10, markerfacecolor="white", color=color)
        for start, (x, value) in rejected:
            if start is not None:
                axis.plot([start[0] + shift, x + shift], [start[1], value], linestyle="--", linewidth=1, color=color)
            axis.plot([x + shift], [value], linestyle="none", marker="X", markersize=9, color="red")
    shown = [mark for marks in verdicts.values() for mark in marks]
    if "rejected" in shown:
        axis.plot([], [], linestyle="none", marker="X", color="red", label="rejected by the gate (not carried on)")
    if "skipped" in shown:
        axis.plot([], [], linestyle="none", marker="o", markerfacecolor="white", color="gray",
                  label="skipped (input passed on)")
    axis.set_xticks(range(len(points)), points)


def kept_path(values: list[float | None], verdicts: list[str | None],
              ) -> tuple[list[tuple[int, float]], list[tuple[tuple[int, float] | None, tuple[int, float]]]]:
    """A base's line (the (x, value) points it carried on from) and each rejected point with the line's point
    before it, where its dashed branch starts."""
    kept: list[tuple[int, float]] = []
    rejected: list[tuple[tuple[int, float] | None, tuple[int, float]]] = []
    for x, (value, verdict) in enumerate(zip(values, verdicts)):
        if value is None:
            continue
        if verdict == "rejected":
            rejected.append((kept[-1] if kept else None, (x, value)))
        else:
            kept.append((x, value))
    return kept, rejected


def _consecutive(points: list[tuple[int, float]]) -> list[list[tuple[int, float]]]:
    """Split (x, y) points into runs of neighbouring x positions."""
    segments: list[list[tuple[int, float]]] = []
    for point in points:
        if segments and point[0] == segments[-1][-1][0] + 1:
            segments[-1].append(point)
        else:
            segments.append([point])
    return segments


def _axes():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(6.4, 3.8), dpi=110)


def _finish(figure, axis, title: str, path: Path, xlabel: str = "evaluated point") -> str:
    """Title, grid and legend, then an atomic save (temporary file renamed into place)."""
    import matplotlib.pyplot as plt

    axis.set_title(title)
    axis.set_xlabel(xlabel)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    figure.tight_layout()
    with atomic_path(path) as tmp:  # a temporary name no other process uses
        figure.savefig(tmp)
    plt.close(figure)
    return str(path)
