"""DPO on the tiny ladder: which settings keep the answer intact (sweep), and what removes loops (control).

sweep: per seed, the default ladder's first two stages (general-OCR rung, structured SFT), then DPO settings on
that structured model, each through the Pipeline (so each gets the evaluation hook and the stage gate's verdict).
The default DPO stage must keep quality within 0.01 of its input and JSON validity within 2 points.

control: the paper's finding in miniature. A deliberately short SFT leaves the model looping; then, with the same
steps and the same pages: (a) DPO on its mined loops, (b) DPO plus the SFT term on the chosen answers, (c) SFT
alone on the chosen answers (the control), (d) no further training.

    python -m scripts.experiments.experiment_dpo sweep --seed 0 --device cpu --work runs/dpo
    python -m scripts.experiments.experiment_dpo control --seed 0 --device cpu --shape tiny --work runs/dpo
    python -m scripts.experiments.experiment_dpo tables --work runs/dpo --out docs/experiments/dpo-degeneration
    bash scripts/experiments/experiment_dpo_gpu.sh        # all of it, CPU and GPU, seeds 0-2, in one device call
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import statistics
from dataclasses import replace
from pathlib import Path

log = logging.getLogger("experiment_dpo")
KEYS = ("quality_score", "paper_score", "cer", "json_valid_rate", "schema_valid_rate", "degeneration_rate",
        "paper_degeneration_rate")
# name -> changes to the recipe's DPO stage (recipes/tiny.yaml); "recipe" is the stage as the recipe sets it
SETTINGS = {
    "recipe": {},
    "lr3e-5": {"optimization.learning_rate": 3e-5},
    "sft2": {"sft_loss_weight": 2.0},
    "ipo": {"loss_type": "ipo"},
    "sigmoid_norm": {"loss_type": "sigmoid_norm"},
    "ld_alpha0.5": {"ld_alpha": 0.5},
    "beta0.5": {"beta": 0.5},
    "lora": {"optimization.method": "lora", "optimization.learning_rate": 1e-3},
    "loops_only": {"mining.reasons": ["degenerate", "furniture_repeat"]},
}
SMALL_SHAPE = {  # about 7 M parameters: the tiny tokenizer, a wider and deeper network
    "hidden_size": 256, "intermediate_size": 768, "num_hidden_layers": 4, "num_attention_heads": 4,
    "num_key_value_heads": 2, "mrope_section": [8, 12, 12], "vision_depth": 4, "vision_hidden_size": 128,
    "vision_intermediate_size": 384, "vision_heads": 4,
}


QUICK = ["data.synthetic.train_pages=8", "data.synthetic.eval_pages=4", "data.synthetic.general_pages=8",
         "stages.general_ocr.optimization.max_steps=2", "stages.structured.optimization.max_steps=2",
         "stages.dpo.optimization.max_steps=2", "stages.dpo.mining.min_pairs=1", "evaluation.max_new_tokens=16",
         "stages.dpo.mining.max_new_tokens=16"]  # --quick: checks the script runs, measures nothing


def _tiny_config(work: Path, seed: int, device: str, quick: bool = False):
    """The default recipe, validated, with this seed and device, into `work/ladder`."""
    from hydra import compose, initialize_config_dir

    from dharma_train.config import validate
    from dharma_train.config_files import config_dir, register_recipes

    register_recipes()
    overrides = [f"output_dir={work / 'ladder'}", f"trainer.seed={seed}", f"data.synthetic.seed={seed}",
                 *(["trainer=auto"] if device == "cuda" else []), *(QUICK if quick else [])]
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return validate(compose(config_name="config", overrides=overrides))


def _with(config, changes: dict):
    """A copy of a dataclass config with dotted keys replaced."""
    for dotted, value in changes.items():
        head, _, rest = dotted.partition(".")
        config = replace(config, **{head: _with(getattr(config, head), {rest: value}) if rest else value})
    return config


def _row(metrics: dict) -> dict:
    return {key: metrics.get(key) for key in KEYS} | {
        "by_family": {f: {k: m.get(k) for k in KEYS} for f, m in metrics.get("by_family", {}).items()}}


def sweep(seed: int, device: str, work: Path, only: list[str], quick: bool = False) -> None:
    from dharma_train import DPOStage, ModelArtifact, Pipeline, StageContext
    from dharma_train.data.pages import load_pages
    from dharma_train.run import execute

    config = _tiny_config(work, seed, device, quick)
    ladder = replace(config, stages={k: v for k, v in config.stages.items() if k in ("general_ocr", "structured")})
    finished = work / "ladder" / "02_structured" / "manifest.json"
    # a second process of the same seed reads the finished ladder instead of writing into its folder again
    summary = json.loads((work / "ladder" / "summary.json").read_text()) if finished.is_file() else execute(ladder)
    start = ModelArtifact(path=str(work / "ladder" / "02_structured" / "model"))
    train, eval_pages = load_pages(work / "ladder" / "data" / "train"), load_pages(work / "ladder" / "data" / "eval")
    context = StageContext(trainer=config.trainer, model=config.model, run_name=f"dpo-sweep-{seed}")
    mined = work / "settings" / "recipe" / "01_dpo" / "pairs.jsonl"
    results = {"seed": seed, "device": device, "structured": _row(summary["entries"][-1]["metrics"]), "settings": {}}
    for name in only or SETTINGS:
        changes = dict(SETTINGS[name])
        if name != "recipe" and "mining.reasons" not in changes and mined.is_file():
            changes["pairs"] = str(mined)  # the same mined pairs as the recipe's setting
        stage = DPOStage("dpo", _with(config.stages["dpo"], changes))
        points = Pipeline(stages=[stage], evaluation=config.evaluation, context=context, gate=config.pipeline).run(
            start, train, eval_pages, work / "settings" / name)
        after = points["entries"][-1]
        record = json.loads((work / "settings" / name / "01_dpo" / "stage.json").read_text())
        results["settings"][name] = {**_row(after["metrics"]), "gate": after["gate"]["verdict"],
                                     "pairs": record.get("pairs", 0), "skipped": record.get("skipped"),
                                     "train_loss": after["train"].get("train_loss")}
        log.info("seed %d %s %s: %s", seed, device, name, results["settings"][name])
        _write(work / f"sweep-{(only or ['all'])[0]}.json", results)  # one file per process of a seed


def control(seed: int, device: str, shape: str, work: Path, quick: bool = False) -> None:
    """Arms (a)-(d) from one looping model; every trained arm takes 40 steps of batch 8 on the same pages."""
    import torch

    from dharma_train import (
        DPOStage,
        DPOStageConfig,
        EvalConfig,
        ModelArtifact,
        OptimizationConfig,
        PageSet,
        SFTStage,
        SFTStageConfig,
        StageContext,
        TrainerConfig,
        evaluate,
        generate_splits,
    )
    from dharma_train.data.pairs import load_pairs
    from dharma_train.models.loading import load_model, load_processor
    from dharma_train.models.tiny import tiny_model_dir
    from dharma_train.stages.mining import MiningConfig

    torch.manual_seed(seed)
    base = ModelArtifact(path=str(tiny_model_dir(shape=SMALL_SHAPE if shape == "small" else None)))
    size = (8, 4, 2, 16) if quick else (64, 32, 20, 96)  # train pages, eval pages, short-SFT steps, token bound
    train, held_out = generate_splits(work / "data", n_train=size[0], n_eval=size[1], seed=seed)
    trainer = TrainerConfig(device=device, seed=seed, logging_steps=50, checkpoint_every=0)
    context = StageContext(trainer=trainer, run_name=f"dpo-control-{seed}")
    evaluation = EvalConfig(max_new_tokens=size[3], batch_size=32)
    full = dict(method="full", freeze_vision=False, batch_size=8, learning_rate=3e-3)
    looping = SFTStage("short_sft", SFTStageConfig(optimization=OptimizationConfig(max_steps=size[2], **full))).run(
        base, train, work / "short_sft", context).artifact
    mining = MiningConfig(samples_per_page=1, max_new_tokens=size[3], batch_size=32, reasons=["degenerate"],
                          min_pairs=1 if quick else 4)
    arms = {"d_no_training": looping}
    steps = OptimizationConfig(max_steps=2 if quick else 40, **full)
    arms["b_dpo_sft"] = DPOStage("dpo_sft", DPOStageConfig(pairs="mined", mining=mining, sft_loss_weight=1.0,
                                                           optimization=steps)).run(
        looping, train, work / "b_dpo_sft", context).artifact
    pairs_file = work / "b_dpo_sft" / "pairs.jsonl"
    pairs = load_pairs(work / "b_dpo_sft") if pairs_file.stat().st_size else []
    if pairs:  # no looping answer mined: arms (a) and (c) have nothing to train on (recorded as absent)
        arms["a_dpo"] = DPOStage("dpo", DPOStageConfig(pairs=str(pairs_file), optimization=steps)).run(
            looping, train, work / "a_dpo", context).artifact
        by_id = {page.id: page for page in train}
        chosen = PageSet(root=train.root, pages=[by_id[pair.id] for pair in pairs if pair.id in by_id])
        arms["c_sft_chosen"] = SFTStage("sft_chosen", SFTStageConfig(optimization=steps)).run(
            looping, chosen, work / "c_sft_chosen", context).artifact
    results = {"seed": seed, "device": device, "shape": shape, "pairs": len(pairs),
               "pair_pages": len({pair.id for pair in pairs}), "arms": {}}
    dtype = trainer.model_dtype()
    for name, artifact in sorted(arms.items()):
        model = load_model(artifact, dtype=dtype, device=trainer.resolved_device())
        metrics = evaluate(model, load_processor(artifact.path), held_out, evaluation, progress=False)
        results["arms"][name] = _row(metrics)
        log.info("control seed %d %s %s: %s", seed, device, name, results["arms"][name])
        _write(work / "control.json", results)


def _write(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1))


# ---- tables and plots ---------------------------------------------------------------------------------------

def tables(work: Path, out: Path) -> None:
    """Mean and spread over seeds of every sweep setting and control arm, per device; CSV, Markdown, plots."""
    out.mkdir(parents=True, exist_ok=True)
    sweeps = [json.loads(p.read_text()) for p in sorted(work.rglob("sweep-*.json"))]
    controls = [json.loads(p.read_text()) for p in sorted(work.rglob("control.json"))]
    lines = ["# DPO experiment tables (made by python -m scripts.experiments.experiment_dpo tables)", ""]
    rows = []
    for run in sweeps:
        for name, r in run["settings"].items():
            s = run["structured"]
            rows.append({"part": "sweep", "device": run["device"], "seed": run["seed"], "name": name,
                         "pairs": r["pairs"], "gate": r["gate"], "skipped": bool(r["skipped"]),
                         "d_quality": r["quality_score"] - s["quality_score"],
                         "d_json": r["json_valid_rate"] - s["json_valid_rate"], **{k: r[k] for k in KEYS}})
    for run in controls:
        for name, r in run["arms"].items():
            rows.append({"part": f"control-{run['shape']}", "device": run["device"], "seed": run["seed"],
                         "name": name, "pairs": run["pairs"], **{k: r[k] for k in KEYS}})
    if rows:
        with (out / "results.csv").open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=sorted({k for r in rows for k in r}))
            writer.writeheader()
            writer.writerows(rows)
    lines += _sweep_table(rows) + _control_table(rows)
    (out / "tables.md").write_text("\n".join(lines) + "\n")
    _plot_control(rows, out)
    print("\n".join(lines))


def _mean_sd(values: list[float], fmt: str) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return ""
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{fmt.format(statistics.mean(values))} ± {fmt.format(spread)}"


def _groups(rows: list[dict], part: str) -> dict:
    grouped: dict = {}
    for row in rows:
        if row["part"] == part:
            grouped.setdefault((row["device"], row["name"]), []).append(row)
    return grouped


def _sweep_table(rows: list[dict]) -> list[str]:
    grouped = _groups(rows, "sweep")
    if not grouped:
        return []
    lines = ["## Sweep: DPO settings on the tiny ladder's structured model", "",
             "| device | setting | seeds | pairs | quality change | JSON change | quality | JSON valid | degeneration "
             "| within 0.01 / 2 pts | gate kept |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for (device, name), group in sorted(grouped.items()):
        ok = sum(r["d_quality"] >= -0.01 and r["d_json"] >= -0.02 for r in group)
        kept = sum(r["gate"] != "rejected" for r in group)
        lines.append(f"| {device} | {name} | {len(group)} | {_mean_sd([r['pairs'] for r in group], '{:.0f}')} | "
                     f"{_mean_sd([r['d_quality'] for r in group], '{:+.3f}')} | "
                     f"{_mean_sd([r['d_json'] for r in group], '{:+.2f}')} | "
                     f"{_mean_sd([r['quality_score'] for r in group], '{:.3f}')} | "
                     f"{_mean_sd([r['json_valid_rate'] for r in group], '{:.2f}')} | "
                     f"{_mean_sd([r['degeneration_rate'] for r in group], '{:.3f}')} | {ok}/{len(group)} | "
                     f"{kept}/{len(group)} |")
    return lines + [""]


def _control_table(rows: list[dict]) -> list[str]:
    lines = []
    for part in sorted({r["part"] for r in rows if r["part"].startswith("control")}):
        lines += [f"## Control ({part.removeprefix('control-')} model): what removes the loops", "",
                  "| device | arm | seeds | degeneration (ours) | paper degeneration | quality | CER | JSON valid |",
                  "|---|---|---|---|---|---|---|---|"]
        for (device, name), group in sorted(_groups(rows, part).items()):
            lines.append(f"| {device} | {name} | {len(group)} | "
                         f"{_mean_sd([r['degeneration_rate'] for r in group], '{:.3f}')} | "
                         f"{_mean_sd([r['paper_degeneration_rate'] for r in group], '{:.3f}')} | "
                         f"{_mean_sd([r['quality_score'] for r in group], '{:.3f}')} | "
                         f"{_mean_sd([r['cer'] for r in group], '{:.3f}')} | "
                         f"{_mean_sd([r['json_valid_rate'] for r in group], '{:.2f}')} |")
        lines.append("")
    return lines


def _plot_control(rows: list[dict], out: Path) -> None:
    """One bar per arm and device: mean degeneration and quality with the spread over seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    parts = sorted({r["part"] for r in rows if r["part"].startswith("control")})
    for part in parts:
        grouped = _groups(rows, part)
        labels = [f"{name}\n{device}" for device, name in sorted(grouped)]
        figure, axes = plt.subplots(1, 2, figsize=(11, 4))
        for axis, key, title in ((axes[0], "degeneration_rate", "degeneration (held-out)"),
                                 (axes[1], "quality_score", "quality score")):
            values = [[r[key] for r in grouped[k]] for k in sorted(grouped)]
            means = [statistics.mean(v) for v in values]
            spread = [statistics.stdev(v) if len(v) > 1 else 0 for v in values]
            axis.bar(range(len(labels)), means, yerr=spread, capsize=3)
            axis.set_xticks(range(len(labels)), labels, fontsize=7, rotation=45, ha="right")
            axis.set_title(title)
        figure.suptitle(f"DPO control ({part.removeprefix('control-')} model): mean ± sd over seeds")
        figure.tight_layout()
        figure.savefig(out / f"{part}.png", dpi=110)
        plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("part", choices=["sweep", "control", "tables"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--shape", choices=["tiny", "small"], default="tiny")
    parser.add_argument("--only", nargs="*", default=[], help="sweep: these settings only")
    parser.add_argument("--quick", action="store_true", help="a few steps on a few pages: checks, not measures")
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if args.part == "sweep":
        sweep(args.seed, args.device, args.work, args.only, args.quick)
    elif args.part == "control":
        control(args.seed, args.device, args.shape, args.work, args.quick)
    else:
        tables(args.work, args.out or args.work / "tables")


if __name__ == "__main__":
    main()
