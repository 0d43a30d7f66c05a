"""`python -m dharma_train recipe=NAME key=value ...`: compose a recipe with Hydra, validate it, run it.

With no arguments it runs the embedded `tiny` recipe: the whole ladder on a random-init model, on a CPU.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile

import hydra
from omegaconf import DictConfig

from dharma_train.config_files import CONFIG_NAME, config_dir, register_recipes
from dharma_train.errors import DharmaError, DiskFullError, Interrupted

log = logging.getLogger("dharma_train")


def _run(cfg: DictConfig) -> None:
    from dataclasses import replace

    from dharma_train import distributed
    from dharma_train.config import validate
    from dharma_train.reporting.run_record import resume_command
    from dharma_train.run import execute, run_ablation
    from dharma_train.training.preemption import handle_signals

    argv = sys.argv[1:]
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
    if distributed.is_main():
        report = f"{config.output_dir}/{'comparison.md' if ablation else 'report.md'}"
        log.info("finished: %s", report)
        print(open(report, encoding="utf-8").read())
    return summary


def _keep_hydra_files_to_rank_zero(argv: list[str]) -> list[str]:
    """Processes other than rank 0 keep Hydra's own files (log, resolved config) out of the run folder."""
    rank = os.environ.get("RANK", "0")
    if rank == "0":
        return argv
    return [*argv, "hydra.output_subdir=null",
            f"hydra.run.dir={tempfile.gettempdir()}/dharma_train_hydra/rank{rank}_pid{os.getpid()}"]


def main() -> None:
    register_recipes()
    sys.argv = _keep_hydra_files_to_rank_zero(sys.argv)
    hydra.main(version_base="1.3", config_path=str(config_dir()), config_name=CONFIG_NAME)(_run)()


if __name__ == "__main__":
    main()
