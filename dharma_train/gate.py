"""The stage gate: a stage is kept only if its evaluation is no worse than the best point so far.

After each stage is evaluated, the pipeline compares the new point with the point the stage started from (with
`keep_best`, always the best point so far: every point it carried on from passed the gate) on the run's criteria,
each with a tolerance. A regressing stage is
`rejected` (keep_best: the next stage starts from the best model, and export ships it), `warned` (warn: the run
goes on from the regressed model) or stops the run (fail). Quantization's job is cost, not quality: it is kept
while the quality it costs stays within `quantize_tolerance`. A stage that passed its input on untrained (DPO with too
few pairs) is `skipped`: not evaluated again, it repeats its input's metrics and the run carries on from that input.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from dharma_train.errors import DharmaError

# metric -> +1 when higher is better, -1 when lower is better; and how the report prints it
CRITERIA = {"quality_score": (+1, "quality", "{:.3f}"), "json_valid_rate": (+1, "JSON valid", "{:.0%}"),
            "schema_valid_rate": (+1, "schema valid", "{:.0%}"), "degeneration_rate": (-1, "degeneration", "{:.1%}"),
            "cer": (-1, "CER", "{:.3f}")}
ON_REGRESSION = ("keep_best", "warn", "fail")


@dataclass
class GateConfig:
    """`conf/pipeline/default.yaml`: what a stage must not make worse, and what happens when it does."""

    on_regression: str = "keep_best"  # keep_best | warn | fail
    # criterion -> the worsening allowed (absolute: 0.01 quality, 0.02 = 2 points of JSON validity)
    tolerance: dict[str, float] = field(default_factory=lambda: {
        "quality_score": 0.01, "json_valid_rate": 0.02, "degeneration_rate": 0.0})
    quantize_tolerance: dict[str, float] = field(default_factory=lambda: {
        "quality_score": 0.02, "json_valid_rate": 0.02, "degeneration_rate": 0.0})
    exempt: list[str] = field(default_factory=list)  # stage names recorded but never rejected

    def __post_init__(self):
        if self.on_regression not in ON_REGRESSION:
            raise ValueError(f"pipeline.on_regression must be one of {list(ON_REGRESSION)}, "
                             f"got {self.on_regression!r}")
        for name in ("tolerance", "quantize_tolerance"):
            for key, value in getattr(self, name).items():
                if key not in CRITERIA:
                    raise ValueError(f"pipeline.{name}.{key}: not a gate criterion; one of {sorted(CRITERIA)}")
                if value < 0:
                    raise ValueError(f"pipeline.{name}.{key} must be >= 0, got {value}")

    def criteria_for(self, kind: str) -> dict[str, float]:
        return self.quantize_tolerance if kind == "quantize" else self.tolerance


class StageRegressed(DharmaError):
    """pipeline.on_regression=fail and a stage made the model worse."""


def regressions(kind: str, now: dict, before: dict, config: GateConfig) -> list[str]:
    """One line per criterion on which `now` is worse than `before` by more than its tolerance."""
    lines = []
    for key, tolerance in config.criteria_for(kind).items():
        if key not in now or key not in before:
            continue
        direction, label, fmt = CRITERIA[key]
        worsening = (before[key] - now[key]) * direction
        if worsening > tolerance + 1e-12:
            lines.append(f"{label} {fmt.format(before[key])} -> {fmt.format(now[key])} "
                         f"(tolerance {fmt.format(tolerance)})")
    return lines


def verdict(stage: str, kind: str, now: dict, start: dict, config: GateConfig) -> dict:
    """The gate's record for one evaluated stage, compared with the point it started from (`start`, an entry)."""
    found = [] if stage in config.exempt else regressions(kind, now, start["metrics"], config)
    if not found:
        outcome = "kept"
    else:
        outcome = {"keep_best": "rejected", "warn": "warned", "fail": "rejected"}[config.on_regression]
    return {"verdict": outcome, "against": start["stage"], "regressions": found,
            **({"exempt": True} if stage in config.exempt else {})}


def describe(entry: dict) -> str:
    """The line the log and the report print for a stage that did not pass the gate."""
    gate = entry["gate"]
    worse = "; ".join(gate["regressions"])
    if gate["verdict"] == "rejected":
        return (f"stage {entry['stage']} REJECTED: worse than {gate['against']} on {worse}; "
                f"best so far: {gate['against']}")
    return (f"stage {entry['stage']} made the model worse than {gate['against']} on {worse} "
            f"(pipeline.on_regression=warn)")


def skip_reason(entry: dict) -> str | None:
    """Why a point's stage passed its input on untrained, else None (summaries older than the `skipped` verdict
    record it only in the stage's train record)."""
    return entry.get("gate", {}).get("reason") or entry.get("train", {}).get("skipped") or None


def outcome(entry: dict) -> str:
    """A point's gate verdict as readers print it: `skipped` for a stage that passed its input on, whatever an older
    summary.json called it."""
    return "skipped" if skip_reason(entry) else entry.get("gate", {}).get("verdict", "")


def passed_on(stage: str, kind: str, start: dict, train: dict) -> dict:
    """The point of a stage that passed its input on: the weights, and so the metrics, of `start` (the point it
    started from), recorded without generating again; the gate neither keeps nor rejects it."""
    return {"stage": stage, "kind": kind, "model": start["model"], "artifact": start.get("artifact"),
            "metrics": dict(start["metrics"]), "train": train,
            "gate": {"verdict": "skipped", "against": start["stage"], "regressions": [], "reason": train["skipped"]}}
