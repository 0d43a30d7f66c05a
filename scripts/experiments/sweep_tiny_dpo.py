"""Try one DPO setting on a finished tiny run's structured model, with that run's mined pairs (docs/dpo.md).

    python -m dharma_train output_dir=/tmp/t6/mined stages.dpo.pairs=mined     # once: the SFT model and its pairs
    python -m scripts.experiments.sweep_tiny_dpo /tmp/t6/mined fullC full 1e-3 20 1.0 0.1  # name method lr steps sft_weight beta
"""

import argparse
import logging

from omegaconf import OmegaConf

from dharma_train import DPOStage, DPOStageConfig, ModelArtifact, OptimizationConfig, Pipeline, StageContext
from dharma_train.config_files import config_dir
from dharma_train.data.pages import load_pages
from dharma_train.evaluation.hook import EvalConfig
from dharma_train.training.config import TrainerConfig

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("run")
parser.add_argument("name")
parser.add_argument("method", choices=["lora", "full"])
parser.add_argument("learning_rate", type=float)
parser.add_argument("steps", type=int)
parser.add_argument("sft_loss_weight", type=float)
parser.add_argument("beta", type=float)
parser.add_argument("--pairs", help="a pairs.jsonl (default: the run's mined 03_dpo/pairs.jsonl)")
args = parser.parse_args()
logging.basicConfig(level=logging.WARNING)

evaluation = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(EvalConfig),
                                                 OmegaConf.load(config_dir() / "evaluation" / "tiny.yaml")))
config = DPOStageConfig(pairs=args.pairs or f"{args.run}/03_dpo/pairs.jsonl", beta=args.beta,
                        sft_loss_weight=args.sft_loss_weight,
                        optimization=OptimizationConfig(method=args.method, learning_rate=args.learning_rate,
                                                        max_steps=args.steps, batch_size=8, freeze_vision=False))
pipeline = Pipeline(stages=[DPOStage("dpo", config)], evaluation=evaluation,
                    context=StageContext(trainer=TrainerConfig(device="cpu")))
summary = pipeline.run(ModelArtifact(path=f"{args.run}/02_structured/model"), load_pages(f"{args.run}/data/train"),
                       load_pages(f"{args.run}/data/eval"), f"{args.run}-sweep/{args.name}")
for entry in summary["entries"]:
    m = entry["metrics"]
    print(args.name, entry["stage"], {k: round(m[k], 3) for k in ("quality_score", "paper_score", "cer",
                                                                  "json_valid_rate", "schema_valid_rate",
                                                                  "degeneration_rate")})
