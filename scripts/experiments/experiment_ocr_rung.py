"""Does the general-OCR rung help? DharmaOCR's central finding, in miniature, from random-init VLMs.

One small random-init Qwen2.5-VL (about 30 M parameters) is pretrained on a general image-to-text task, then three
arms take it to a Portuguese structured-OCR specialist with dharma_train's own stages and evaluation hook:

    with_rung      general base -> OCR rung (plain transcription)   -> structured SFT         -> DPO
    no_rung        general base ->                                     structured SFT         -> DPO
    no_rung_budget general base ->                                     structured SFT (longer) -> DPO

`no_rung` is the paper's comparison (the same final stages from a base without the rung); `no_rung_budget` gives
the rung's steps to structured SFT, so its training budget (optimizer steps x batch = examples seen) equals
`with_rung`'s. Every arm of a seed starts from the same pretrained weights and sees the same pages.

    python -m scripts.experiments.experiment_ocr_rung prepare --seed 0 --work runs/ocr_rung
    python -m scripts.experiments.experiment_ocr_rung arm --arm with_rung --seed 0 --work runs/ocr_rung
    python -m scripts.experiments.experiment_ocr_rung compare --work runs/ocr_rung --out runs/ocr_rung/results

`--scale cpu` asks the same question of the embedded tiny model's shape (~1.3 M parameters) on a 2-core CPU
(scripts/experiments/experiment_ocr_rung_cpu.sh); `--scale smoke` shrinks everything to check the script, not to measure.
scripts/experiments/experiment_ocr_rung_gpu.sh runs the 30 M model on one GPU, arms in parallel.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from PIL import Image, ImageDraw

from dharma_train.models.tiny import TINY_SHAPE

log = logging.getLogger("experiment_ocr_rung")

# ~30 M parameters: 8 language layers of width 512, a 6-block vision tower of width 256, the tiny pt-BR tokenizer.
SMALL_SHAPE = {
    "hidden_size": 512, "intermediate_size": 1536, "num_hidden_layers": 8, "num_attention_heads": 8,
    "num_key_value_heads": 2, "mrope_section": [8, 12, 12],  # sums to half the head dimension (512 / 8 / 2)
    "vision_depth": 6, "vision_hidden_size": 256, "vision_intermediate_size": 768, "vision_heads": 4,
    "min_pixels": 28 * 28 * 16, "max_pixels": 28 * 28 * 256,
}
ARMS = ("with_rung", "no_rung", "no_rung_budget")
WORKERS = int(os.environ.get("EXPERIMENT_LOADER_WORKERS", "0"))  # data-loader processes per training process


@dataclass(frozen=True)
class Scale:
    """Page counts, page size and optimizer steps (batch `batch` throughout)."""

    width: int = 336  # body text 15 px high: about half a 28 px vision token
    height: int = 462
    scene_pages: int = 2048
    rung_pages: int = 512
    train_pages: int = 512
    dpo_pages: int = 96
    eval_pages: int = 48
    batch: int = 16
    pretrain_steps: int = 300
    rung_steps: int = 150
    structured_steps: int = 150
    dpo_steps: int = 20
    max_new_tokens: int = 256
    learning_rate: float = 1e-3


SCALES = {
    "small": Scale(),
    # A quick timing check: sized to the ~2 s per step an H100 took in fp32 (attempts 2-3); bf16 runs it in 190 s.
    "short": Scale(scene_pages=800, rung_pages=320, train_pages=320, dpo_pages=48, eval_pages=24, pretrain_steps=50,
                   rung_steps=40, structured_steps=50, dpo_steps=5, max_new_tokens=160),
    # The embedded tiny model's shape on a 2-core CPU (MODEL_SHAPES): the same question, a smaller model, ~30 min.
    "cpu": Scale(width=224, height=308, scene_pages=600, rung_pages=256, train_pages=256, dpo_pages=48, eval_pages=24,
                 batch=8, pretrain_steps=150, rung_steps=100, structured_steps=200, dpo_steps=10, max_new_tokens=160),
    "smoke": Scale(width=224, height=308, scene_pages=16, rung_pages=16, train_pages=16, dpo_pages=8, eval_pages=4,
                   batch=4, pretrain_steps=3, rung_steps=2, structured_steps=2, dpo_steps=1, max_new_tokens=32),
}
SMOKE_SHAPE = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 1, "num_attention_heads": 2,
               "mrope_section": [4, 6, 6], "vision_depth": 1, "vision_hidden_size": 32,
               "vision_intermediate_size": 64, "vision_heads": 2}

MODEL_SHAPES = {"cpu": TINY_SHAPE, "smoke": {**SMALL_SHAPE, **SMOKE_SHAPE}}  # every other scale: SMALL_SHAPE


# ----- general pretraining data: scenes of shapes described in Portuguese (no text on the image) -----

SHAPES = ("círculo", "quadrado", "triângulo", "losango")
COLORS = {"vermelho": (200, 30, 30), "azul": (30, 60, 200), "verde": (30, 150, 60), "amarelo": (220, 190, 20),
          "preto": (20, 20, 20), "laranja": (240, 120, 20)}
PLACES = (("à esquerda", 0), ("no centro", 1), ("à direita", 2))
ROWS = (("em cima", 0), ("embaixo", 1))


def scene(rng: random.Random, width: int, height: int) -> tuple[Image.Image, str]:
    """One to four shapes on a grid of 3 x 2 cells, and the sentence that says what is where."""
    image = Image.new("RGB", (width, height), (245, 245, 240))
    draw = ImageDraw.Draw(image)
    cells = rng.sample([(p, r) for p in PLACES for r in ROWS], rng.randint(1, 4))
    parts = []
    for (place, column), (row, line) in sorted(cells, key=lambda c: (c[1][1], c[0][1])):
        shape, color = rng.choice(SHAPES), rng.choice(list(COLORS))
        size = rng.randint(width // 8, width // 5)
        cx = (column + 0.5) * width / 3 + rng.randint(-8, 8)
        cy = (line + 0.5) * height / 2 + rng.randint(-8, 8)
        box = (cx - size, cy - size, cx + size, cy + size)
        if shape == "círculo":
            draw.ellipse(box, fill=COLORS[color])
        elif shape == "quadrado":
            draw.rectangle(box, fill=COLORS[color])
        elif shape == "triângulo":
            draw.polygon([(cx, cy - size), (cx - size, cy + size), (cx + size, cy + size)], fill=COLORS[color])
        else:
            draw.polygon([(cx, cy - size), (cx + size, cy), (cx, cy + size), (cx - size, cy)], fill=COLORS[color])
        parts.append(f"um {shape} {color} {row} {place}")
    return image, "Vejo " + ", ".join(parts[:-1]) + (" e " if len(parts) > 1 else "") + parts[-1] + "."


def write_scenes(folder: Path, n: int, seed: int, width: int, height: int):
    """A page folder dharma_train reads: images plus pages.jsonl whose answer text is the scene's description."""
    from dharma_train.data.pages import Page, PageSet
    from dharma_train.data.schema import PageAnswer

    (folder / "images").mkdir(parents=True, exist_ok=True)
    pages = []
    for index in range(n):
        image, caption = scene(random.Random(f"scene/{seed}/{index}"), width, height)
        path = folder / "images" / f"scene-{index:05d}.png"
        image.save(path, compress_level=1)
        pages.append(Page(id=f"scene-{index:05d}", image=path, answer=PageAnswer(text=caption), family="scene",
                          task="plain"))
    page_set = PageSet(root=folder, pages=pages)
    page_set.save()
    return page_set


# ----- the steps -----

def seed_dir(work: Path, seed: int) -> Path:
    return work / f"seed{seed}"


def prepare(work: Path, seed: int, scale: Scale, shape: dict) -> None:
    """Build the random-init model, generate every page set, and pretrain the general base."""
    from dharma_train.artifact import ModelArtifact
    from dharma_train.data.synthetic.generate import generate_pages
    from dharma_train.models.tiny import tiny_model_dir
    from dharma_train.stages import SFTStage, SFTStageConfig
    from dharma_train.training.config import OptimizationConfig

    folder = seed_dir(work, seed)
    started = time.perf_counter()
    model = tiny_model_dir(folder / "cache", shape={**shape, "seed": seed})
    log.info("seed %d: model built (%d parameters) in %.0f s", seed, _parameters(model), time.perf_counter() - started)
    pages = {"width": scale.width, "height": scale.height}
    scenes = write_scenes(folder / "data" / "scenes", scale.scene_pages, seed, **pages)
    generate_pages(folder / "data" / "rung", scale.rung_pages, seed=1000 + seed, id_prefix="rung", task="plain", **pages)
    generate_pages(folder / "data" / "train", scale.train_pages, seed=2000 + seed, id_prefix="train", **pages)
    generate_pages(folder / "data" / "dpo", scale.dpo_pages, seed=3000 + seed, id_prefix="dpo", **pages)
    generate_pages(folder / "data" / "eval", scale.eval_pages, seed=4000 + seed, id_prefix="eval", **pages)
    data_seconds = time.perf_counter() - started
    log.info("seed %d: pages written after %.0f s; pretraining %d steps", seed, data_seconds, scale.pretrain_steps)
    stage = SFTStage("general_pretraining", SFTStageConfig(task="plain", optimization=OptimizationConfig(
        method="full", freeze_vision=False, learning_rate=scale.learning_rate, max_steps=scale.pretrain_steps,
        batch_size=scale.batch, warmup=0.05)))
    result = stage.run(ModelArtifact(path=str(model)), scenes, folder / "general_base", _context(seed, "pretrain"))
    record = {"seed": seed, "shape": {**shape, "seed": seed}, "scale": asdict(scale), "model": str(model),
              "parameters": _parameters(model), "general_base": result.artifact.path, "data_seconds": data_seconds,
              "pretrain_seconds": time.perf_counter() - started - data_seconds,
              "pretrain_loss": result.metrics.get("train_loss")}
    (folder / "prepared.json").write_text(json.dumps(record, indent=2))
    log.info("seed %d prepared: %s", seed, record)


def arm_stages(arm: str, scale: Scale, data: Path) -> dict:
    """The arm's stages after the general base; every SFT is full fine-tuning at the same learning rate."""
    from dharma_train.stages import DPOStageConfig, SFTStageConfig
    from dharma_train.stages.mining import MiningConfig
    from dharma_train.training.config import OptimizationConfig

    def sft(task: str, steps: int, folder: str) -> SFTStageConfig:
        return SFTStageConfig(task=task, data=str(data / folder), optimization=OptimizationConfig(
            method="full", freeze_vision=False, learning_rate=scale.learning_rate / 2, max_steps=steps,
            batch_size=scale.batch, warmup=0.05))

    structured_steps = scale.structured_steps + (scale.rung_steps if arm == "no_rung_budget" else 0)
    stages = {"general_ocr": sft("plain", scale.rung_steps, "rung")} if arm == "with_rung" else {}
    stages["structured"] = sft("structured", structured_steps, "train")
    stages["dpo"] = DPOStageConfig(
        data=str(data / "dpo"), pairs="mined", sft_loss_weight=0.2,
        mining=MiningConfig(samples_per_page=1, max_new_tokens=scale.max_new_tokens, batch_size=64, min_pairs=8),
        optimization=OptimizationConfig(method="lora", learning_rate=2e-4, max_steps=scale.dpo_steps,
                                        batch_size=max(2, scale.batch // 2)))
    return stages


def run_arm(work: Path, seed: int, arm: str, scale: Scale) -> None:
    """The arm as an ordinary dharma_train run (pipeline, evaluation after every stage) from the general base."""
    from dharma_train.config import RunConfig
    from dharma_train.data.config import DataConfig
    from dharma_train.evaluation.hook import EvalConfig
    from dharma_train.models.config import ModelConfig
    from dharma_train.run import execute

    folder = seed_dir(work, seed)
    prepared = json.loads((folder / "prepared.json").read_text())
    data = folder / "data"
    config = RunConfig(
        name=f"ocr_rung-{arm}-seed{seed}", output_dir=str(folder / arm),
        model=ModelConfig(path=prepared["general_base"], min_pixels=prepared["shape"]["min_pixels"],
                          max_pixels=prepared["shape"]["max_pixels"]),
        data=DataConfig(train=str(data / "train"), eval=str(data / "eval")),
        stages=arm_stages(arm, scale, data),
        evaluation=EvalConfig(max_new_tokens=scale.max_new_tokens, batch_size=64, cache="dynamic"),
        trainer=_context(seed, arm).trainer,
    )
    started = time.perf_counter()
    execute(config)
    (folder / arm / "wall.json").write_text(json.dumps({"seconds": time.perf_counter() - started}))


def compare_all(work: Path, out: Path) -> None:
    """One comparison over every arm and seed (rows named 'arm seedN'), plus wall times, into `out`."""
    from dharma_train.reporting.comparison import compare, write_comparison

    runs = {f"{arm} seed{folder.name[4:]}": folder / arm
            for folder in sorted(work.glob("seed*")) for arm in ARMS if (folder / arm / "summary.json").is_file()}
    rows = compare(runs)
    write_comparison(rows, out)
    write_arm_means(rows, out)
    walls = {name: json.loads((path / "wall.json").read_text())["seconds"]
             for name, path in runs.items() if (path / "wall.json").is_file()}
    prepared = {folder.name: json.loads((folder / "prepared.json").read_text())
                for folder in sorted(work.glob("seed*")) if (folder / "prepared.json").is_file()}
    (out / "timings.json").write_text(json.dumps({"arms": walls, "prepared": prepared}, indent=2))
    print((out / "comparison.md").read_text())
    print(json.dumps({"arm_seconds": walls}, indent=2))


def write_arm_means(rows: list[dict], out: Path) -> None:
    """Per arm, the mean over seeds at every point (table and plots): fifteen seed lines on one plot do not read."""
    from statistics import mean, stdev

    from dharma_train.reporting.comparison import stage_order
    from dharma_train.reporting.plots import plot_by_base

    points = stage_order(rows)
    metrics = [("quality", "mean quality score over seeds (higher is better)", "arm_means_scores.png"),
               ("degeneration", "mean degeneration rate over seeds (lower is better)", "arm_means_degeneration.png")]
    seeds = {row["base"].split(" ")[1] for row in rows}
    lines = [f"# Means over seeds, per arm ({len(seeds)} seeds; ± is the sample standard deviation)", "",
             "| arm | metric | " + " | ".join(points) + " |", "|---|---|" + "---|" * len(points)]
    for column, title, name in metrics:
        means = {}
        for arm in ARMS:
            cells, values = [], []
            for point in points:
                found = [row[column] for row in rows if row["base"].split(" ")[0] == arm and row["stage"] == point
                         and row.get(column) is not None]
                average = mean(found) if found else None
                values.append(average)
                spread = f" ± {stdev(found):.3f}" if len(found) > 1 else ""
                cells.append(f"{average:.3f}{spread} (n={len(found)})" if found else "")
            if any(v is not None for v in values):
                means[arm] = values
                lines.append(f"| {arm} | {column} | " + " | ".join(cells) + " |")
        plot_by_base(points, means, title, out / name)
    (out / "arm_means.md").write_text("\n".join(lines) + "\n\n![scores](arm_means_scores.png)\n"
                                      "![degeneration](arm_means_degeneration.png)\n", encoding="utf-8")


def _context(seed: int, name: str):
    from dharma_train.stage import StageContext
    from dharma_train.training.config import TrainerConfig

    # precision auto: bf16 autocast over fp32 master weights on a GPU, fp32 on a CPU. Attempts 1-4 trained in fp32 on
    # the H100 at ~2 s a step: fp32 takes the vision tower's one-sdpa-call-per-window loop, since the one-launch
    # varlen kernel needs half precision (dharma_train/models/varlen.py). No mid-stage checkpoints: every stage is
    # a few minutes long. Loader workers (EXPERIMENT_LOADER_WORKERS) did not help in fp32 (2.4 s a step against 2.0 s);
    # in bf16, with two, pretraining ran at ~3.5 steps a second (docs/experiments/ocr-rung.md).
    return StageContext(trainer=TrainerConfig(device="auto", precision="auto", seed=seed, logging_steps=25,
                                              dataloader_workers=WORKERS, checkpoint_every=0),
                        run_name=f"ocr_rung-{name}-seed{seed}")


def _parameters(model_dir: Path) -> int:
    from safetensors import safe_open

    with safe_open(str(Path(model_dir) / "model.safetensors"), framework="pt") as weights:
        return sum(math.prod(weights.get_slice(name).get_shape()) for name in weights.keys())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("step", choices=["prepare", "arm", "compare"])
    parser.add_argument("--work", type=Path, default=Path("runs/ocr_rung"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--arm", choices=ARMS)
    parser.add_argument("--scale", choices=sorted(SCALES), default="small")
    parser.add_argument("--out", type=Path, help="compare: where the table, plots and timings go")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    scale = SCALES[args.scale]
    shape = MODEL_SHAPES.get(args.scale, SMALL_SHAPE)
    if args.step == "prepare":
        prepare(args.work, args.seed, scale, shape)
    elif args.step == "arm":
        run_arm(args.work, args.seed, args.arm, scale)
    else:
        compare_all(args.work, args.out or args.work / "results")


if __name__ == "__main__":
    main()
