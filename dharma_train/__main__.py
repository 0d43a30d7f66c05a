"""`python -m dharma_train recipe=NAME key=value ...`: compose a recipe with Hydra, validate it, run it.

With no arguments it runs the embedded `tiny` recipe: the whole ladder on a random-init model, on a CPU.
"""

from __future__ import annotations

import logging
import sys

import hydra
from omegaconf import DictConfig

from dharma_train.configs import CONFIG_NAME, config_dir, register_recipes
from dharma_train.errors import DharmaError

log = logging.getLogger("dharma_train")


def _run(cfg: DictConfig) -> None:
    from dharma_train.ablation import run_ablation
    from dharma_train.config import validate
    from dharma_train.run import execute

    try:
        config = validate(cfg)
        ablation = bool(config.ablation.bases)
        summary = run_ablation(config) if ablation else execute(config)
    except DharmaError as error:
        log.error("%s", error)
        sys.exit(2)
    report = f"{config.output_dir}/{'comparison.md' if ablation else 'report.md'}"
    log.info("finished: %s", report)
    print(open(report, encoding="utf-8").read())
    return summary


def main() -> None:
    register_recipes()
    hydra.main(version_base="1.3", config_path=str(config_dir()), config_name=CONFIG_NAME)(_run)()


if __name__ == "__main__":
    main()
