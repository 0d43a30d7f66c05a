"""PNG plots of a run or an ablation: score and degeneration by stage, one line per series."""

from __future__ import annotations

from pathlib import Path

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
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6.4, 3.8), dpi=110)
    for label, values in lines.items():
        axis.plot(points, [float("nan") if v is None else v for v in values], marker="o",
                  linewidth=2.5 if label == "all pages" else 1.2, label=label)
    axis.set_title(title)
    axis.set_xlabel("evaluated point")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    figure.savefig(tmp)
    plt.close(figure)
    tmp.replace(path)
    return str(path)
