"""bf16 against AWQ W4A16 on one GPU: the quantize stage on a Qwen2.5-VL-3B-shaped model, then the evaluation hook
on both models over the same pages (throughput, memory, cost per million pages).

Model: random-init Qwen2.5-VL-3B shape (scripts/benchmarks/bench_generation.py), bf16, saved to disk so the stage runs exactly
as in a pipeline: `QuantizeStage.run` (llm-compressor AWQ, calibrated on synthetic pages with their answers), then
`load_model` + `evaluate` for each model. Random weights make the quality numbers meaningless (the answers are
noise); the point is speed, memory and size. Both models decode with the dynamic cache (no compile time); each is
measured `--rounds` times, bf16 first in even rounds and AWQ first in odd ones.
Also checks that an exported tiny folder loads with plain `AutoProcessor` where torchvision is installed.

Run on the device from the repository root, llm-compressor's wheels in a folder of their own (docs/quantization.md):
    run(command='WHEELS=".whl .carry/export-wheels" bash scripts/gpu.sh python3 -m scripts.benchmarks.bench_quantize',
        carry=[".whl", ".carry/export-wheels"])
On a CPU, a dry run of the same code on the tiny model: python -m scripts.benchmarks.bench_quantize --shape tiny
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

AUTO_PROCESSOR_CHECK = r"""
import sys
from PIL import Image
from transformers import AutoModelForImageTextToText, AutoProcessor
processor = AutoProcessor.from_pretrained(sys.argv[1])
model = AutoModelForImageTextToText.from_pretrained(sys.argv[1])
messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Transcreva."}]}]
prompt = processor.apply_chat_template(messages, add_generation_prompt=True)
inputs = processor(images=[Image.open(sys.argv[2]).convert("RGB")], text=[prompt], return_tensors="pt")
out = model.generate(**inputs, max_new_tokens=4, do_sample=False)
print(type(processor).__name__, out.shape[1] - inputs["input_ids"].shape[1], "dharma_train" in sys.modules)
"""


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--shape", choices=("3b", "tiny"), default="3b")
    parser.add_argument("--pages", type=int, default=32, help="evaluation pages, the same for both models")
    parser.add_argument("--calibration-pages", type=int, default=16)
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--width", type=int, default=644)
    parser.add_argument("--height", type=int, default=896)
    parser.add_argument("--rounds", type=int, default=2,
                        help="measurements of each model, alternating which goes first, so order effects show")
    parser.add_argument("--out", default=os.environ.get("OUT", "."))
    args = parser.parse_args()

    from dharma_train import StageContext, TrainerConfig
    from dharma_train.artifact import ModelArtifact
    from dharma_train.data.pages import PageSet
    from dharma_train.data.synthetic.generate import generate_pages
    from dharma_train.evaluation.hook import EvalConfig, evaluate
    from dharma_train.models.config import ModelConfig
    from dharma_train.models.loading import load_model, load_processor
    from dharma_train.models.tiny import tiny_model_dir
    from dharma_train.stages.quantize import QuantizeStage, QuantizeStageConfig

    started = time.perf_counter()
    work = Path(tempfile.mkdtemp())
    tiny = tiny_model_dir(work / "cache")
    pixels = args.width * args.height
    processor = load_processor(str(tiny), max_pixels=pixels)
    train = generate_pages(work / "train", args.calibration_pages, seed=0, width=args.width, height=args.height)
    pages = generate_pages(work / "eval", args.pages, seed=1, width=args.width, height=args.height)
    report = {"shape": args.shape, "pages": args.pages, "calibration_pages": args.calibration_pages,
              "new_tokens": args.new_tokens, "batch": args.batch, "page_px": [args.width, args.height],
              "torch": torch.__version__, "transformers": _version("transformers"),
              "llmcompressor": _version("llmcompressor"), "compressed_tensors": _version("compressed-tensors"),
              "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu", "rows": []}
    out = Path(args.out)

    def save():
        report["total_seconds"] = time.perf_counter() - started
        (out / "bench_quantize.json").write_text(json.dumps(report, indent=2))

    source = tiny
    if args.shape == "3b":
        from bench_generation import model_3b

        source = work / "bf16"
        model = model_3b(processor.tokenizer)
        report["parameters"] = sum(p.numel() for p in model.parameters())
        model.save_pretrained(source)
        processor.save_pretrained(source)
        del model
        gc.collect()
        torch.cuda.empty_cache()
    trainer = TrainerConfig()
    context = StageContext(trainer=trainer, model=ModelConfig(path=str(source), max_pixels=pixels))
    stage = QuantizeStage("quantize", QuantizeStageConfig(calibration_pages=args.calibration_pages,
                                                          min_calibration_pages=args.calibration_pages))
    result = stage.run(ModelArtifact(path=str(source)), train, work / "quantize", context)
    report["quantize"] = result.metrics
    print(f"quantized in {result.metrics['quantize_seconds']:.0f} s: {result.metrics['input_weights_bytes'] / 1e9:.2f}"
          f" GB -> {result.metrics['output_weights_bytes'] / 1e9:.2f} GB", flush=True)
    save()

    device = trainer.resolved_device()
    settings = EvalConfig(max_new_tokens=args.new_tokens, batch_size=args.batch, cache="dynamic")
    models = [("bf16", ModelArtifact(path=str(source))), ("awq_w4a16", result.artifact)]
    order = [(round_, model) for round_ in range(args.rounds)
             for model in (models if round_ % 2 == 0 else models[::-1])]
    for round_, (name, artifact) in order:
        model = load_model(artifact, dtype=trainer.model_dtype(), settings=context.model, device=device)
        loaded = torch.cuda.memory_allocated() / 2**30 if device == "cuda" else None
        # Warm-up: kernels, allocator, and the decompression a compressed-tensors model does on its first forward.
        evaluate(model, processor, PageSet(pages.root, pages.pages[: args.batch]),
                 EvalConfig(max_new_tokens=4, batch_size=args.batch, cache="dynamic"), progress=False)
        metrics = evaluate(model, processor, pages, settings, progress=False)
        row = {"model": name, "round": round_, "weights_gb_on_disk": artifact.weights_bytes() / 1e9,
               "gpu_gib_after_load": loaded,
               **{key: metrics[key] for key in ("pages_per_second", "new_tokens_per_second", "seconds",
                                                 "cost_per_million_pages", "model_memory_gib", "peak_memory_gib",
                                                 "quality_score", "degeneration_rate", "token_limit_rate")}}
        report["rows"].append(row)
        print(json.dumps(row), flush=True)
        save()
        del model
        gc.collect()
        if device == "cuda":
            torch.cuda.empty_cache()

    report["auto_processor"] = _auto_processor_check(tiny, pages.pages[0].image, work)
    save()
    _print_table(report)


def _auto_processor_check(tiny: Path, image: Path, work: Path) -> str:
    """An exported tiny folder, loaded by plain AutoProcessor in a fresh interpreter (needs torchvision)."""
    import importlib.util

    if importlib.util.find_spec("torchvision") is None:
        return "skipped: torchvision is not installed"
    from dharma_train import StageContext
    from dharma_train.artifact import ModelArtifact
    from dharma_train.data.pages import PageSet
    from dharma_train.stages.export import ExportStage

    ExportStage("export").run(ModelArtifact(path=str(tiny)), PageSet(work), work / "export", StageContext())
    result = subprocess.run([sys.executable, "-c", AUTO_PROCESSOR_CHECK, str(work / "export" / "model"), str(image)],
                            capture_output=True, text=True)
    return result.stdout.strip() if result.returncode == 0 else f"failed: {result.stderr[-1500:]}"


def _version(name: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _print_table(report: dict) -> None:
    print(f"\n{report['gpu']}, torch {report['torch']}, transformers {report['transformers']}, llmcompressor "
          f"{report['llmcompressor']}, compressed-tensors {report['compressed_tensors']}")
    print("| model | round | weights on disk GB | GPU GiB after load | GiB held after warm-up | peak GiB | "
          "new tokens/s | pages/hour | cost per M pages |\n|---|---|---|---|---|---|---|---|---|")
    for r in report["rows"]:
        print(f"| {r['model']} | {r['round']} | {r['weights_gb_on_disk']:.2f} | {_f(r['gpu_gib_after_load'])} | "
              f"{r['model_memory_gib']:.2f} | {_f(r['peak_memory_gib'])} | {r['new_tokens_per_second']:.0f} | "
              f"{r['pages_per_second'] * 3600:,.0f} | ${r['cost_per_million_pages']:,.0f} |")
    print(f"AutoProcessor on an exported folder: {report.get('auto_processor')}")
    print(f"total {report['total_seconds']:.0f} s")


def _f(value) -> str:
    return "" if value is None else f"{value:.2f}"


if __name__ == "__main__":
    main()
