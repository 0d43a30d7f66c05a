"""A run's inputs as values: the configured sources loaded (or generated) once, then handed to the stages.

`resolve_inputs` loads and checks what a RunConfig names (report in data/load_report.json), generates a missing
split and each stage's generated set (by rank 0 alone), and loads each stage's own pages and given pairs under
`output_dir/data`; `build_stages` makes the stage objects from the configs and those values. The config keeps what
the user wrote: a stage's `data` and `pairs` still name the sources, and nothing here changes it. `plan` builds its
stages with `loaded_pair_sets`, the pair sets an earlier run loaded, and writes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from dharma_train import distributed
from dharma_train.config import RunConfig
from dharma_train.data.loading import load_splits
from dharma_train.data.pages import PAGES_FILE, PageSet, load_pages
from dharma_train.data.pairs import PairSet
from dharma_train.files import read_json_or_none, write_json_atomically
from dharma_train.models.config import ModelConfig
from dharma_train.run_folder import GENERATION_FILE, RunFolder
from dharma_train.stages import build_stage
from dharma_train.stages.dpo import given_pairs

# Page sets a stage can name as its `data` instead of a source; each is generated from `data.synthetic`.
GENERATED_SETS = ("general",)  # mixed-language pages with Markdown answers, for the general-OCR rung


@dataclass(frozen=True)
class RunInputs:
    """What a run trains and evaluates on, loaded once; Pipeline.run takes its pages, build_stages its pairs."""

    train: PageSet
    eval_pages: PageSet
    stage_pages: dict[str, PageSet] = field(default_factory=dict)  # stages with pages of their own (`data`)
    stage_pairs: dict[str, PairSet] = field(default_factory=dict)  # DPO stages' given pairs, as loaded


def resolve_inputs(config: RunConfig, models: list[ModelConfig] | None = None) -> RunInputs:
    """The run's splits, each stage's own pages and each stage's given pairs, loaded or generated under
    output_dir/data (the same bytes on every run, so a resumed run finds the same inputs). Every loaded row must
    fit the maximum sequence length of each of `models` (those that train on it; by default config.model)."""
    from dharma_train.data.lengths import length_bound

    bounds = tuple(length_bound(model) for model in (models or [config.model]))
    train, eval_pages = run_splits(config, bounds)
    taken = evaluated_images(config, eval_pages)
    return RunInputs(train=train, eval_pages=eval_pages, stage_pages=stage_pages(config, taken, bounds),
                     stage_pairs=stage_pair_sets(config, taken, bounds))


def evaluated_images(config: RunConfig, eval_pages: PageSet) -> dict[str, str]:
    """The evaluation pages' image identities, which no stage's own pages or given pairs may hold (a leak the run's
    train/eval load order cannot see); hashed only when some stage has pages or pairs of its own."""
    from dharma_train.data.splits import image_identities

    if not any(stage.data not in (None, *GENERATED_SETS) or given_pairs(stage) for stage in config.stages.values()):
        return {}
    return image_identities(eval_pages, "eval")


def build_stages(config: RunConfig, stage_pairs: dict[str, PairSet]) -> list:
    """The stage objects in run order, each DPO stage with the pair set loaded for it (if given)."""
    return [build_stage(name, stage, stage_pairs.get(name)) for name, stage in config.stages.items()]


def run_splits(config: RunConfig, bounds: tuple = ()) -> tuple[PageSet, PageSet]:
    """data.train and data.eval loaded and checked once (by rank 0); a split not given is generated (or found, drawn
    with the same settings, by an earlier run into the same folder)."""
    from dharma_train.data.synthetic.generate import eval_seed

    data, folder = config.data, RunFolder(config.output_dir).data
    given = distributed.on_main(load_splits, data, folder, bounds)
    s = data.synthetic
    drawn = {"width": s.width, "height": s.height, "families": s.families, "max_words": s.max_words,
             "min_body_px": dict(s.min_body_px or {})}
    for split, n, seed in (("train", s.train_pages, s.seed), ("eval", s.eval_pages, eval_seed(s.seed))):
        if split not in given:
            given[split] = _generated(folder / split, n, seed=seed, id_prefix=split, workers=s.workers, **drawn)
    return given["train"], given["eval"]


def _generated(folder: Path, n: int, workers: int, **drawn) -> PageSet:
    """Pages generated into `folder` by rank 0, or the pages an earlier run generated there with the same
    settings (recorded in generation.json, written last): a resumed run does not draw them again."""
    from dharma_train.data.synthetic.generate import generate_pages

    record = {"pages": n, **{name: list(value) if isinstance(value, tuple) else value
                             for name, value in drawn.items()}}
    if read_json_or_none(folder / GENERATION_FILE) == record and (folder / PAGES_FILE).is_file():
        return load_pages(folder)

    def generate() -> PageSet:
        pages = generate_pages(folder, n, workers=workers, **drawn)
        write_json_atomically(folder / GENERATION_FILE, record)
        return pages

    return distributed.on_main(generate)


def stage_pages(config: RunConfig, taken: dict[str, str] | None = None, bounds: tuple = ()) -> dict[str, PageSet]:
    """Each stage's own pages: a generated set's name (GENERATED_SETS) is generated into data/<name>; any other
    `data` is a page source, loaded through the run's loader into data/stages/NAME (write `./general` for a folder
    of that name)."""
    pages = {}
    for name, stage in config.stages.items():
        if stage.data is None:  # every stage kind's config names its own pages, or None for the run's
            continue
        pages[name] = _generated_set(config, stage.data) if stage.data in GENERATED_SETS \
            else _loaded_pages(config, name, stage.data, taken, bounds)
    return pages


def _generated_set(config: RunConfig, name: str) -> PageSet:
    from dharma_train.data.synthetic.generate import named_seed

    s = config.data.synthetic
    return _generated(RunFolder(config.output_dir).generated_set(name), s.general_pages, workers=s.workers,
                      seed=named_seed(s.seed, name), width=s.width, height=s.height, task=name, id_prefix=name,
                      max_words=s.general_max_words, min_body_px=dict(s.min_body_px or {}))


def _loaded_pages(config: RunConfig, name: str, source: str, taken: dict[str, str] | None,
                  bounds: tuple) -> PageSet:
    """A stage's own pages through the run's loader: the same checks, `data.strict` and load report as data.train
    (data/stages/NAME/load_report.json), an evaluation page's image skipped as a leak (`taken`); checked once, by
    rank 0."""
    from dharma_train.data.loading import load_page_set

    data = config.data
    return distributed.on_main(load_page_set, source, RunFolder(config.output_dir).stage_data(name),
                               format=data.format, strict=data.strict, max_pixels=data.max_pixels,
                               pdf_dpi=data.pdf_dpi, max_skipped_share=data.max_skipped_share, split=f"stages.{name}",
                               taken=taken, bounds=bounds)


def stage_pair_sets(config: RunConfig, taken: dict[str, str] | None = None,
                    bounds: tuple = ()) -> dict[str, PairSet]:
    """Each stage's given pairs through the pages' row policy, once: `data.strict` stops at the first bad row,
    otherwise bad rows are skipped and listed in data/stages/NAME/pairs/load_report.json (report.md counts them),
    and images are prepared with `data.max_pixels`."""
    from dharma_train.data.pairs import load_pair_set

    data, sets = config.data, {}
    for name, stage in config.stages.items():
        source = given_pairs(stage)
        if source is not None:
            sets[name] = distributed.on_main(load_pair_set, source, RunFolder(config.output_dir).stage_pairs(name),
                                             strict=data.strict, max_pixels=data.max_pixels, pdf_dpi=data.pdf_dpi,
                                             split=f"stages.{name}.pairs", taken=taken, bounds=bounds)
    return sets


def loaded_pair_sets(config: RunConfig) -> dict[str, PairSet]:
    """The pair sets an earlier run loaded into output_dir from the sources the stages name now (what `plan` keys
    stages with, writing nothing; the run loads them again at start-up, as it does the pages)."""
    from dharma_train.data.pairs import is_pair_set

    sets = {}
    for name, stage in config.stages.items():
        source, folder = given_pairs(stage), RunFolder(config.output_dir).stage_pairs(name)
        if source is not None and is_pair_set(folder) and PairSet(folder).report().get("source") == str(source):
            sets[name] = PairSet(folder)
    return sets
