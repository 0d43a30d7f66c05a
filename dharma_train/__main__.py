"""`python -m dharma_train [RECIPE.yaml | recipe=NAME] key=value ...`: compose a recipe, validate it, run it.

With no arguments it runs the embedded `tiny` recipe: the whole ladder on a random-init model, on a CPU.
`--help`, `--version`, `env` and `plan` (validate and show the plan, run nothing) are answered before Hydra
starts; `--help` and `--version` without importing torch.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
from contextlib import ExitStack
from typing import TYPE_CHECKING

import hydra
from omegaconf import DictConfig

from dharma_train.config_files import CONFIG_NAME, config_dir
from dharma_train.errors import ConfigError, DharmaError, DiskFullError, Interrupted

if TYPE_CHECKING:
    from dharma_train.config import RunConfig

log = logging.getLogger("dharma_train")


def _run(cfg: DictConfig) -> None:
    from dataclasses import replace

    from dharma_train import distributed
    from dharma_train.config import validate
    from dharma_train.console import quiet_libraries
    from dharma_train.reporting.run_record import resume_command
    from dharma_train.run import execute
    from dharma_train.run_ablation import run_ablation
    from dharma_train.training.preemption import handle_signals

    quiet_libraries()  # after Hydra configured logging, before llm-compressor is imported
    argv = _command_words or sys.argv[1:]
    config = None
    try:
        config = validate(cfg)
        distributed.start(cpu=config.trainer.resolved_device() == "cpu")
        # `${now:...}` resolves in each process and can differ by a second: every process takes rank 0's folder.
        config = replace(config, output_dir=distributed.broadcast(config.output_dir))
        log.info("output_dir: %s (if interrupted, resume with: %s)", config.output_dir,
                 resume_command(argv, config.output_dir))
        with handle_signals():  # SIGTERM/SIGINT: checkpoint and stop cleanly (docs/running-long-jobs.md)
            ablation = bool(config.ablation.bases)
            summary = run_ablation(config) if ablation else execute(config, argv)
    except Interrupted as error:
        log.error("%s. Finished stages and the last complete checkpoint are kept; resume with:\n  %s", error,
                  resume_command(argv, config.output_dir))
        sys.exit(error.exit_status)
    except DiskFullError as error:
        log.error("%s. Nothing cut short counts as finished; once there is room, resume with:\n  %s", error,
                  resume_command(argv, config.output_dir))
        sys.exit(2)
    except DharmaError as error:
        log.error("%s", error)
        sys.exit(2)
    except Exception:
        if config is not None:
            log.error("the run stopped on an unexpected error (traceback below); finished stages and the last complete "
                      "checkpoint are kept. Once it is fixed, resume with:\n  %s", resume_command(argv, config.output_dir))
        raise
    if distributed.is_main():
        report = f"{config.output_dir}/{'comparison.md' if ablation else 'report.md'}"
        log.info("finished: %s", report)
        print(open(report, encoding="utf-8").read())
    distributed.finish()
    return summary


def _keep_hydra_files_to_rank_zero(argv: list[str]) -> list[str]:
    """Processes other than rank 0 keep Hydra's own files (log, resolved config) out of the run folder."""
    rank = os.environ.get("RANK", "0")
    if rank == "0":
        return argv
    return [*argv, "hydra.output_subdir=null",
            f"hydra.run.dir={tempfile.gettempdir()}/dharma_train_hydra/rank{rank}_pid{os.getpid()}"]


_command_words: list[str] = []  # as typed (a recipe file path, not the `recipe=` Hydra is given): run.json's command
HELP_WORDS = {"--help", "-h", "help"}
# With these Hydra options the composition is Hydra's alone (a sweep, another config folder): not checked first.
UNCHECKED_OPTIONS = {"-m", "--multirun", "--config-dir", "-cd", "--config-path", "-cp", "--config-name", "-cn"}
# With these Hydra shows something and runs nothing: no run folder, so no lock.
SHOWING_OPTIONS = {"--cfg", "-c", "--info", "-i", "--hydra-help", "--shell-completion", "-sc", "--resolve"}


def fail(error: Exception) -> None:
    """One line on stderr and exit status 2: what is wrong, and what to do (docs/configuration.md)."""
    print(f"dharma_train: error: {error}", file=sys.stderr)
    sys.exit(2)


def plan_command(overrides: list[str]) -> None:
    """Validate, print the plan, stop: exit 0 when the run would start, 2 when it would be refused."""
    from dharma_train.cli.compose import compose_config
    from dharma_train.cli.plan import plan

    text, problems = plan(compose_config(overrides))
    print(text)
    if problems:
        fail(problems[0])


def check_first(overrides: list[str], options: list[str]) -> tuple[list[str], RunConfig | None]:
    """Compose and validate as Hydra will, so a bad recipe, key or value is one line (exit 2) before Hydra runs.

    Returns the overrides for Hydra, with an interpolated output_dir (`outputs/tiny/${now:...}`) pinned to the
    folder resolved here (the lock is taken on it before Hydra writes there), and the RunConfig; None for a
    composition left to Hydra (a sweep, another config folder).
    """
    from omegaconf import OmegaConf

    from dharma_train.cli.compose import compose_config
    from dharma_train.config import validate

    if UNCHECKED_OPTIONS & {option.split("=")[0] for option in options}:
        return overrides, None
    composed = compose_config(overrides)
    config = validate(composed)
    if OmegaConf.to_container(composed, resolve=False).get("output_dir") != config.output_dir:
        quoted = config.output_dir.replace("'", "\\'")
        overrides = [*overrides, f"output_dir='{quoted}'"]
    return overrides, config


def lock_before_hydra(stack: ExitStack, config: RunConfig | None) -> None:
    """The run folder's lock, taken before Hydra writes `.hydra/` and its log there: a run refused because another
    holds the folder writes nothing into it (the run takes the same lock again, a no-op in this process)."""
    if config is None or os.environ.get("RANK", "0") != "0":  # other ranks: rank 0 holds it for the launch
        return
    from dharma_train.run_lock import hold_run_lock

    logging.basicConfig(level=logging.INFO, format="[%(asctime)s][%(name)s][%(levelname)s] - %(message)s")
    try:  # Hydra's logging replaces this handler; until then, waiting for the lock is said on stderr
        stack.enter_context(hold_run_lock(config.output_dir, config.trainer.lock_wait_seconds))
    except DharmaError as error:
        fail(error)


def main() -> None:
    words = sys.argv[1:]
    if HELP_WORDS & set(words[:1]) or {"--help", "-h"} & set(words):
        from dharma_train.cli.help import help_text

        print(help_text())
        return
    if words[:1] == ["--version"]:
        from dharma_train.cli.help import version

        print(f"dharma_train {version()}")
        return
    if words[:1] == ["env"]:
        from dharma_train.cli.env_report import env_report

        print(env_report())
        return
    from dharma_train.cli.compose import register_recipes_once, split_words

    try:
        if words[:1] == ["plan"]:
            overrides, options = split_words(words[1:])
            if options:
                raise ConfigError(f"plan takes a recipe file and key=value overrides, not Hydra options {options}")
            plan_command(overrides)
            return
        overrides, options = split_words(words)
        overrides, config = check_first(overrides, options)
        _command_words[:] = words
    except DharmaError as error:
        fail(error)
    register_recipes_once()
    sys.argv = _keep_hydra_files_to_rank_zero([sys.argv[0], *overrides, *options])
    with ExitStack() as stack:
        if not SHOWING_OPTIONS & {option.split("=")[0] for option in options}:
            lock_before_hydra(stack, config)
        hydra.main(version_base="1.3", config_path=str(config_dir()), config_name=CONFIG_NAME)(_run)()


if __name__ == "__main__":
    main()
