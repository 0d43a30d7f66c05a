"""Run by tests/test_distributed_processes.py under `accelerate launch --cpu --num_processes 2`: every process
evaluates, mines and runs a pipeline on the same pages; results go to OUT/rank<N>.json, files to OUT/rank<N>/."""

import json
import sys
from dataclasses import asdict
from pathlib import Path

from dharma_train import distributed
from dharma_train.artifact import ModelArtifact
from dharma_train.data.pages import load_pages
from dharma_train.errors import DataError
from dharma_train.evaluation.hook import EvalConfig, evaluate
from dharma_train.models.loading import load_model, load_processor
from dharma_train.pipeline import Pipeline
from dharma_train.stage import Stage, StageContext, StageResult
from dharma_train.stages.mining import MiningConfig, mine_pairs
from dharma_train.training.config import TrainerConfig


def _fail_on_rank(rank: int):
    raise DataError(f"rank {rank} found bad data")


class KeepModel(Stage):
    name = "noop"

    def run(self, model, pages, output_dir, context):
        return StageResult(self.name, model, {})


def main(model_dir: str, pages_dir: str, out: str) -> None:
    distributed.start(cpu=True)
    rank, out = distributed.rank(), Path(out)
    own = out / f"rank{rank}"  # each process is handed its own folder: only rank 0's may fill up
    artifact, pages = ModelArtifact(path=model_dir), load_pages(pages_dir)
    model, processor = load_model(artifact), load_processor(model_dir)
    config = EvalConfig(max_new_tokens=8, batch_size=1)
    metrics = evaluate(model, processor, pages, config, output_dir=own / "evaluation", progress=False)
    pairs, stats = mine_pairs(model, processor, pages, "structured",
                              MiningConfig(samples_per_page=0, max_new_tokens=8, batch_size=1), progress=False)
    Pipeline(stages=[KeepModel()], evaluation=config,
             context=StageContext(trainer=TrainerConfig(device="cpu"))).run(artifact, pages, pages, own / "pipeline")
    try:  # rank 0 fails alone: every process must get its error rather than wait for a result
        distributed.on_main(_fail_on_rank, rank)
        failure = None
    except DataError as error:
        failure = str(error)
    result = {"rank": rank, "on_main_failure": failure, "world": distributed.world_size(), "shard": [p.id for p in distributed.shard(pages.pages)],
              "metrics": metrics, "pairs": [asdict(p) for p in pairs], "mining": stats,
              "output_dir": distributed.broadcast(f"outputs/run-{rank}")}
    (out / f"rank{rank}.json").write_text(json.dumps(result, default=str))
    distributed.finish()


if __name__ == "__main__":
    main(*sys.argv[1:])
