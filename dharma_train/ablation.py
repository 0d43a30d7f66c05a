"""The `ablation` group's schema: the same stages from several starting models (run.run_ablation runs them).

A recipe lists its bases under `ablation.bases`; `python -m dharma_train recipe=NAME` then runs each base into
`output_dir/<base>/` and writes `output_dir/comparison.{md,csv}` and two plots. A base may leave out stages it
already has (an OCR specialist skips the general-OCR rung).

    python -m dharma_train recipe=tiny_ablation
    python -m dharma_train recipe=ablation_3b output_dir=runs/abl   # again with the same output_dir to resume
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from dharma_train.run_folder import DATA as DATA_FOLDER  # the run's pages, shared by every base: no base may take its name

BASE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


@dataclass
class AblationBase:
    """One starting model of an ablation."""

    path: str  # a hub id, a local folder, or "tiny"
    skip: list[str] = field(default_factory=list)  # stages of the recipe this base leaves out


@dataclass
class AblationConfig:
    """`conf/ablation/none.yaml`. No bases: an ordinary run of `model.path`. Bases: one run each, then a comparison."""

    bases: dict[str, AblationBase] = field(default_factory=dict)

    def __post_init__(self):
        for name in self.bases:
            if not BASE_NAME.fullmatch(name) or name == DATA_FOLDER:
                raise ValueError(f"ablation.bases.{name}: a base name is a folder name of letters, digits, '_', "
                                 f"'.', '-' (and not '{DATA_FOLDER}')")

    def check_stages(self, stage_names: list[str], removed: list[str] = ()) -> None:
        """Every skipped stage exists (or was removed from the recipe: skipping it then changes nothing), and every
        base keeps at least one stage."""
        for name, base in self.bases.items():
            unknown = sorted(set(base.skip) - set(stage_names) - set(removed))
            if unknown:
                raise ValueError(f"ablation.bases.{name}.skip names unknown stage(s) {unknown}; stages: {stage_names}")
            if not set(stage_names) - set(base.skip):
                raise ValueError(f"ablation.bases.{name}.skip leaves no stage to run")
