"""`plan` for an ablation: every base in its own folder, its stages and those it skips, what the run would reuse or
run for it and why (the same chained check as a single run's plan), and every base that cannot be loaded here, with
the key that names it (`ablation.bases.NAME.path`; an ablation does not read `model.path`)."""

from __future__ import annotations

from pathlib import Path


def ablation_lines(config, problems: list[str]) -> list[str]:
    """One block per base; each unreachable base is added to `problems` (all of them, not only the first)."""
    from dharma_train.run_ablation import base_config, unreachable_bases
    from dharma_train.run_inputs import loaded_pair_sets

    unreachable = unreachable_bases(config)
    problems.extend(unreachable.values())
    train, eval_pages = _shared_pages(config)
    pair_sets = loaded_pair_sets(config)  # loaded once into the ablation's folder, for every base
    bases = config.ablation.bases
    lines = [f"ablation: {len(bases)} bases, each an ordinary run in output_dir/BASE, then output_dir/comparison.md"]
    for number, (name, base) in enumerate(bases.items(), start=1):
        run = base_config(config, name, train, eval_pages)
        skips = f"; skips {', '.join(base.skip)} (ablation.bases.{name}.skip)" if base.skip else ""
        lines.append(f"base {number}/{len(bases)} {name}: {base.path} in {run.output_dir}{skips}")
        lines.append(f"  model: REFUSED: {unreachable[name]}" if name in unreachable else f"  model: {_loads(base)}")
        lines += ["  stages:", *_with_skipped(list(config.stages), name, base.skip, _stage_lines(run, pair_sets))]
        lines += [f"  {line}" for line in _memory(run, name not in unreachable, problems)]
    return lines


def _stage_lines(run, pair_sets) -> list[str]:
    from dharma_train.cli.plan_stages import stage_lines

    return [f"  {line}" for line in stage_lines(run, pair_sets)]


def _memory(run, loadable: bool, problems: list[str]) -> list[str]:
    from dharma_train.cli.plan_stages import model_lines

    return model_lines(run, loadable, problems)


def _with_skipped(recipe_stages: list[str], base: str, skip: list[str], own: list[str]) -> list[str]:
    """The base's own stage lines, with a line for each recipe stage it skips, in the recipe's order."""
    lines, own_lines = [], iter(own)
    for stage in recipe_stages:
        lines.append(f"    [-] {stage}: skipped by this base (ablation.bases.{base}.skip)" if stage in skip
                     else next(own_lines))
    return lines


def _loads(base) -> str:
    from dharma_train.models.config import EMBEDDED, TINY

    if base.path in EMBEDDED:
        return "built on first use, offline" if base.path == TINY else "shipped with dharma_train, offline"
    return "loadable here"


def _shared_pages(config) -> tuple[str, str]:
    """The page folders every base would be given (run_inputs.run_splits without generating any)."""
    folder = Path(config.output_dir) / "data"
    return str(config.data.train or folder / "train"), str(config.data.eval or folder / "eval")

