"""PNG plots of a run or an ablation: score and degeneration by stage, one line per series."""

from __future__ import annotations

from pathlib import Path

from dharma_train.files import atomic_path

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
    return [Path(p).name for p in written]


def plot_lines(points: list[str], lines: dict[str, list[float | None]], title: str, path: Path) -> str:
    """A line per series over the stage axis; missing values leave gaps."""
    figure, axis = _axes()
    for label, values in lines.items():
        axis.plot(points, [float("nan") if v is None else v for v in values], marker="o",
                  linewidth=2.5 if label == "all pages" else 1.2, label=label)
    return _finish(figure, axis, title, path)


def plot_by_base(points: list[str], lines: dict[str, list[float | None]], title: str, path: Path) -> str:
    """An ablation's figure: one line per base over the shared stage axis; dotted across stages a base skipped."""
    figure, axis = _axes()
    for label, values in lines.items():
        kept = [(x, v) for x, v in enumerate(values) if v is not None]
        (through,) = axis.plot([x for x, _ in kept], [v for _, v in kept], linestyle=":", linewidth=1.2)
        for number, segment in enumerate(_consecutive(kept)):
            axis.plot([x for x, _ in segment], [v for _, v in segment], marker="o", linewidth=2,
                      color=through.get_color(), label=label if number == 0 else None)
    axis.set_xticks(range(len(points)), points)
    return _finish(figure, axis, title, path)


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


def _finish(figure, axis, title: str, path: Path) -> str:
    """Title, grid and legend, then an atomic save (temporary file renamed into place)."""
    import matplotlib.pyplot as plt

    axis.set_title(title)
    axis.set_xlabel("evaluated point")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    figure.tight_layout()
    with atomic_path(path) as tmp:  # a temporary name no other process uses
        figure.savefig(tmp)
    plt.close(figure)
    return str(path)
