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


@dataclass(frozen=True)
class Verdict:
    """The gate's record of one point, as summary.json stores it under `gate` and every reader reads it."""

    outcome: str  # base | kept | warned | rejected | skipped ("" for an entry that has none)
    against: str | None = None  # the point it was compared with (and started from)
    regressions: tuple[str, ...] = ()  # one line per criterion it made worse beyond its tolerance
    reason: str | None = None  # skipped: why the stage passed its input on untrained
    exempt: bool = False  # pipeline.exempt: recorded, never rejected

    def to_dict(self) -> dict:
        stored = {"verdict": self.outcome}
        if self.against is not None:
            stored |= {"against": self.against, "regressions": list(self.regressions)}
        if self.reason is not None:
            stored["reason"] = self.reason
        return stored | ({"exempt": True} if self.exempt else {})

    @classmethod
    def of(cls, entry: dict) -> Verdict:
        """A summary entry's verdict; an older summary.json recorded a skipped stage only in its train record and
        called it by another verdict, which reads as `skipped` here."""
        gate = entry.get("gate") or {}
        reason = gate.get("reason") or (entry.get("train") or {}).get("skipped") or None
        return cls(outcome="skipped" if reason else gate.get("verdict", ""), against=gate.get("against"),
                   regressions=tuple(gate.get("regressions", ())), reason=reason, exempt=bool(gate.get("exempt")))

    @property
    def gated(self) -> bool:
        """A stage's point the gate judged (or passed over as skipped), not the base or an entry without one."""
        return self.outcome not in ("", "base")


BASE = Verdict("base")


def verdict(stage: str, kind: str, now: dict, start: dict, config: GateConfig) -> Verdict:
    """The gate's verdict on one evaluated stage, compared with the point it started from (`start`, an entry)."""
    exempt = stage in config.exempt
    found = [] if exempt else regressions(kind, now, start["metrics"], config)
    if not found:
        outcome = "kept"
    else:
        outcome = {"keep_best": "rejected", "warn": "warned", "fail": "rejected"}[config.on_regression]
    return Verdict(outcome, against=start["stage"], regressions=tuple(found), exempt=exempt)


def describe(entry: dict) -> str:
    """The line the log and the report print for a stage that did not pass the gate."""
    gate = Verdict.of(entry)
    worse = "; ".join(gate.regressions)
    if gate.outcome == "rejected":
        return (f"stage {entry['stage']} REJECTED: worse than {gate.against} on {worse}; "
                f"best so far: {gate.against}")
    return (f"stage {entry['stage']} made the model worse than {gate.against} on {worse} "
            f"(pipeline.on_regression=warn)")


def passed_on(stage: str, kind: str, start: dict, train: dict) -> dict:
    """The point of a stage that passed its input on: the weights, and so the metrics, of `start` (the point it
    started from), recorded without generating again; the gate neither keeps nor rejects it."""
    return {"stage": stage, "kind": kind, "model": start["model"], "artifact": start.get("artifact"),
            "metrics": dict(start["metrics"]), "train": train,
            "gate": Verdict("skipped", against=start["stage"], reason=train["skipped"]).to_dict()}
