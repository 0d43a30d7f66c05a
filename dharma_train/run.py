"""From a validated RunConfig to a finished run: check, resolve once what the run needs, run the pipeline.

`resolve` turns the config into new values (the pages, each stage's own pages); nothing here changes the config.
An ablation (`ablation.bases`) is one ordinary run per base on shared pages, then one comparison.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path

from dharma_train import distributed
from dharma_train.ablation import AblationConfig
from dharma_train.artifact import ModelArtifact
from dharma_train.config import RunConfig
from dharma_train.data.loading import load_splits
from dharma_train.data.pages import PAGES_FILE, PageSet
from dharma_train.models.config import TINY
from dharma_train.pipeline import Pipeline
from dharma_train.preflight import check_run, check_stages
from dharma_train.run_folder import RunFolder
from dharma_train.stage import StageContext
from dharma_train.stages import build_stage

log = logging.getLogger(__name__)

# Page sets a stage can name as its `data` instead of a folder; each is generated from `data.synthetic`.
GENERATED_SETS = ("general",)  # mixed-language pages with Markdown answers, for the general-OCR rung


@dataclass(frozen=True)
class RunPlan:
    """What a run needs beyond its validated config, resolved once."""

    train: PageSet
    eval_pages: PageSet
    stages: dict[str, object]  # each stage's config, its `data` and given `pairs` replaced by the folders loaded


def resolve(config: RunConfig) -> RunPlan:
    """The configured sources loaded and checked (report in data/load_report.json), a missing split generated (by
    rank 0 alone), and each stage's own pages and given pairs loaded (or its generated set written) under
    `output_dir/data`."""
    train, eval_pages = _splits(config)
    return RunPlan(train=train, eval_pages=eval_pages, stages=resolve_stage_data(config, Path(config.output_dir)))


def _splits(config: RunConfig) -> tuple[PageSet, PageSet]:
    data = config.data
    given = distributed.on_main(load_splits, data, RunFolder(config.output_dir).data)  # checked once, by rank 0
    if "train" not in given or "eval" not in given:
        from dharma_train.data.synthetic.generate import generate_splits

        s = data.synthetic
        generated = distributed.on_main(generate_splits, RunFolder(config.output_dir).data,
                                        n_train=s.train_pages, n_eval=s.eval_pages, seed=s.seed, width=s.width,
                                        height=s.height, families=s.families, max_words=s.max_words,
                                        workers=s.workers)
        given = {"train": given.get("train", generated[0]), "eval": given.get("eval", generated[1])}
    return given["train"], given["eval"]


def resolve_stage_data(config: RunConfig, run_dir: Path) -> dict[str, object]:
    """Stage configs in which a `data` naming a generated set (GENERATED_SETS) becomes `run_dir/data/<name>`,
    generated there (the same bytes on every run); any other `data` is a page source, loaded through the run's
    loader into `run_dir/data/stages/NAME` (write `./general` for a folder of that name). Given `pairs` become the
    pair set loaded into `run_dir/data/stages/NAME/pairs`, so the stage trains on exactly what was checked."""
    from dharma_train.data.synthetic.generate import generate_pages, named_seed

    s = config.data.synthetic
    resolved = {}
    for name, stage in config.stages.items():
        pairs = _load_stage_pairs(config, run_dir, name, stage)
        if pairs is not None:
            stage = replace(stage, pairs=str(pairs))
        data = stage.data  # every stage kind's config names its own pages, or None for the run's
        if data is None:
            resolved[name] = stage
            continue
        if data not in GENERATED_SETS:
            resolved[name] = replace(stage, data=str(_load_stage_data(config, run_dir, name, data).root))
            continue
        folder = RunFolder(run_dir).generated_set(data)
        distributed.on_main(generate_pages, folder, s.general_pages, seed=named_seed(s.seed, data), width=s.width,
                            height=s.height, task=data, id_prefix=data, max_words=s.general_max_words,
                            workers=s.workers)
        resolved[name] = replace(stage, data=str(folder))
    return resolved


def _load_stage_data(config: RunConfig, run_dir: Path, name: str, source: str) -> PageSet:
    """A stage's own pages through the run's loader: the same checks, `data.strict` and load report as data.train
    (run_dir/data/stages/NAME/load_report.json); checked once, by rank 0."""
    from dharma_train.data.loading import load_page_set

    data = config.data
    return distributed.on_main(load_page_set, source, RunFolder(run_dir).stage_data(name), format=data.format,
                               strict=data.strict, max_pixels=data.max_pixels, split=f"stages.{name}")


def _load_stage_pairs(config: RunConfig, run_dir: Path, name: str, stage) -> Path | None:
    """A stage's given pairs through the pages' row policy, once: `data.strict` stops at the first bad row,
    otherwise bad rows are skipped and listed in run_dir/data/stages/NAME/pairs/load_report.json (report.md counts
    them), and images are prepared with `data.max_pixels`. Returns that folder, the pair set the stage reads as it
    is (None for pairs the stage builds itself)."""
    from dharma_train.data.pairs import load_pair_set
    from dharma_train.stages.dpo import given_pairs

    source = given_pairs(stage)
    if source is None:
        return None
    data = config.data
    return distributed.on_main(load_pair_set, source, RunFolder(run_dir).stage_pairs(name), strict=data.strict,
                               max_pixels=data.max_pixels, split=f"stages.{name}.pairs")


def execute(config: RunConfig, argv: list[str] | None = None) -> dict:
    """Fail on an unreachable model, a machine or memory budget it cannot fit, or bad data first, then train and
    evaluate every stage. Into an output_dir that already holds a run, finished stages are reused and an interrupted
    one resumes; another process running into it stops this one (run_lock.py). `argv`: the command-line overrides,
    recorded in run.json with the command that resumes the run. Launched on several processes, the process group
    must be started first (`distributed.start`, as the CLI does)."""
    with _run_lock(config):
        return _execute(config, argv)


def _run_lock(config: RunConfig):
    """The run folder's lock, taken by rank 0 for all processes of a launch."""
    from contextlib import nullcontext

    from dharma_train.run_lock import hold_run_lock

    if not distributed.is_main():
        return nullcontext()
    return hold_run_lock(config.output_dir, config.trainer.lock_wait_seconds)


def _execute(config: RunConfig, argv: list[str] | None) -> dict:
    from dharma_train.reporting.run_record import write_run_record

    base = check_run(config)  # every check that needs no page, before any is generated
    distributed.on_main(write_run_record, config, argv)
    plan = resolve(config)
    log.info("pages: %d for training (%s), %d for evaluation (%s)", len(plan.train), plan.train.root,
             len(plan.eval_pages), plan.eval_pages.root)
    pipeline = Pipeline(
        stages=[build_stage(name, stage) for name, stage in plan.stages.items()],
        evaluation=config.evaluation,
        gate=config.pipeline,
        context=StageContext(trainer=config.trainer, model=config.model, tracking=config.tracking,
                             run_name=config.name),
    )
    return pipeline.run(base, plan.train, plan.eval_pages, config.output_dir)


# ---- ablation: several bases through the same stages --------------------------------------------------------------

def base_config(config: RunConfig, name: str, train: str, eval_pages: str) -> RunConfig:
    """The ordinary run of one base: its model, its stages, the shared pages, its own folder."""
    base = config.ablation.bases[name]
    return replace(
        config, name=f"{config.name}-{name}", output_dir=str(Path(config.output_dir) / name),
        model=replace(config.model, path=base.path), data=replace(config.data, train=train, eval=eval_pages),
        stages={stage: settings for stage, settings in config.stages.items() if stage not in base.skip},
        ablation=AblationConfig(),
    )


def unreachable_bases(config: RunConfig) -> dict[str, str]:
    """Each base whose model cannot be loaded here, with why, in words naming its own key (`ablation.bases.NAME.path`,
    the one an ablation reads; `model.path` it ignores)."""
    from dharma_train.errors import ModelUnavailableError
    from dharma_train.models.loading import check_available

    found = {}
    for name, base in config.ablation.bases.items():
        if base.path == TINY:
            continue
        try:
            check_available(ModelArtifact(path=base.path), setting=f"ablation.bases.{name}.path")
        except ModelUnavailableError as error:
            found[name] = f"ablation.bases.{name}.path: {error}"
    return found


def check_bases_reachable(config: RunConfig) -> None:
    """Every unreachable base fails the run at once, all of them named (not only the first)."""
    from dharma_train.errors import ModelUnavailableError

    unreachable = unreachable_bases(config)
    if unreachable:
        raise ModelUnavailableError(f"{len(unreachable)} of {len(config.ablation.bases)} ablation bases cannot be "
                                    f"loaded here: " + " | ".join(unreachable.values()))


def shared_pages(config: RunConfig) -> tuple[str, str]:
    """Train and eval folders every base uses: the given ones, pages generated earlier, or new ones."""
    data = config.data
    folder = RunFolder(config.output_dir).data
    earlier = {split: folder / split for split in ("train", "eval") if (folder / split / PAGES_FILE).is_file()}
    train = data.train or earlier.get("train")
    eval_pages = data.eval or earlier.get("eval")
    if train and eval_pages:
        log.info("shared pages: %s (train), %s (eval)", train, eval_pages)
        return str(train), str(eval_pages)
    generated_train, generated_eval = _splits(config)
    return str(generated_train.root), str(generated_eval.root)


def run_ablation(config: RunConfig) -> list[dict]:
    """Check every base, share the pages (and each stage's generated set), run each base, then compare; the
    ablation's folder is locked throughout, each base's while it runs."""
    with _run_lock(config):
        return _run_ablation(config)


def _run_ablation(config: RunConfig) -> list[dict]:
    from dharma_train.reporting.comparison import compare, write_comparison

    check_bases_reachable(config)  # before any base trains
    config.trainer.check_hardware()
    check_stages([build_stage(name, stage) for name, stage in config.stages.items()])  # before the pages
    train, eval_pages = shared_pages(config)
    stages = resolve_stage_data(config, Path(config.output_dir))  # shared folders, the same on every run and resume
    runs = {}
    for number, name in enumerate(config.ablation.bases, start=1):
        run = base_config(replace(config, stages=stages), name, train, eval_pages)
        runs[name] = run.output_dir
        # An ordinary run: each stage is reused or re-run by its key (manifest.py), as in any single run, so a changed
        # setting re-trains that stage and those after it, and a finished base re-uses every stage and evaluation.
        log.info("base %d/%d %s (%s): stages %s", number, len(config.ablation.bases), name, run.model.path,
                 list(run.stages))
        execute(run)
    rows = compare(runs)
    written = write_comparison(rows, config.output_dir, runs)
    log.info("comparison: %s", ", ".join(str(p) for p in written))
    return rows
