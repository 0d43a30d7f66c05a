"""Evaluate one model alone, without training: `python -m dharma_train.evaluation --model PATH_OR_HUB_ID`.

    python -m dharma_train.evaluation --model runs/tiny/02_structured/model --pages data/eval --output-dir eval_out
    python -m dharma_train.evaluation --model tiny                  # the embedded model on generated pages

Writes metrics.json, predictions.jsonl (every output with its scores) and report.md to --output-dir.
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
from dataclasses import asdict
from pathlib import Path

from dharma_train.cli.formatting import DefaultsHelpFormatter
from dharma_train.data.config import DEFAULT_MAX_SKIPPED_SHARE
from dharma_train.errors import DharmaError
from dharma_train.files import write_json_atomically
from dharma_train.run_folder import METRICS, REPORT


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m dharma_train.evaluation", description=__doc__.splitlines()[0],
                                     formatter_class=DefaultsHelpFormatter)
    parser.add_argument("--model", required=True, help="a local model folder, a hub id, or 'tiny'")
    parser.add_argument("--adapter-base", help="when --model is a LoRA adapter folder: the model it adapts")
    parser.add_argument("--pages", help="any data source (a page folder, the benchmark's parquet files, JSONL, ...: "
                                        "docs/data-loading.md); default: 16 generated pages")
    parser.add_argument("--strict", action="store_true", help="stop at the first bad row instead of skipping it")
    parser.add_argument("--max-skipped-share", type=float, default=DEFAULT_MAX_SKIPPED_SHARE,
                        help="stop when --pages loses more than this share of its rows to bad rows, instead of "
                             "evaluating on what is left (1: never stop)")
    parser.add_argument("--output-dir", "--out", default="evaluation", help="where metrics and predictions go")
    parser.add_argument("--task", choices=["structured", "plain"], help="what the answers are scored as "
                        "(default: the evaluation group's, structured)")
    parser.add_argument("--max-new-tokens", type=int, help="answer length bound per page (default: 160 for "
                        "--model tiny, as the tiny recipe evaluates; else 2048: conf/evaluation/*.yaml)")
    parser.add_argument("--batch-size", type=int, help="pages generated together (default: 16 for --model tiny, "
                        "else 8)")
    parser.add_argument("--max-pages", type=int, help="evaluate only the first N pages (default: all)")
    parser.add_argument("--cache", choices=["auto", "static", "dynamic"],
                        help="KV cache: auto is static (compiled) on CUDA, dynamic elsewhere (default: auto)")
    parser.add_argument("--price-per-hour", type=float, help="USD per hour of this machine, for cost per million "
                        "pages (default: 2.5)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="where the model runs")
    parser.add_argument("--max-pixels", type=int, help="pixel budget per page image (default: the processor's)")
    parser.add_argument("--pdf-dpi", type=int, help="PDF pages in --pages are rendered at this resolution, lower "
                                                    "when over the pixel budget (default: 150)")
    return parser.parse_args(argv)


def evaluation_config(args: argparse.Namespace):
    """The evaluation group's settings (tiny.yaml for the embedded models, as tiny_random uses), then the flags."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from dharma_train.config_files import config_dir
    from dharma_train.evaluation.hook import EvalConfig
    from dharma_train.models.config import EMBEDDED

    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):  # the group file as Hydra reads it
        composed = compose(config_name=f"evaluation/{'tiny' if args.model in EMBEDDED else 'default'}")
    group = OmegaConf.to_container(composed.evaluation)
    given = {"task": args.task, "max_new_tokens": args.max_new_tokens, "batch_size": args.batch_size,
             "max_pages": args.max_pages, "cache": args.cache, "price_per_hour": args.price_per_hour}
    return EvalConfig(**{**group, **{key: value for key, value in given.items() if value is not None}})


def run(args: argparse.Namespace, command: str | None = None) -> dict:
    """Check the model and pages first, then load, generate, score and write; report.md says which pages were
    evaluated (the source, its format, rows used, fixed and skipped by reason: the load report's own counts)."""
    from dharma_train.artifact import ModelArtifact
    from dharma_train.data.config import DEFAULT_MAX_PIXELS, DEFAULT_PDF_DPI
    from dharma_train.data.loading import REPORT_FILE, load_page_set
    from dharma_train.reporting.run_record import loaded_lines
    from dharma_train.evaluation.hook import evaluate
    from dharma_train.models.loading import check_available, load_model, load_processor
    from dharma_train.reporting.report import write_report
    from dharma_train.artifact import base_artifact
    from dharma_train.training.config import TrainerConfig

    config = evaluation_config(args)
    base = ModelArtifact(path=args.adapter_base) if args.adapter_base else None
    artifact = ModelArtifact(path=args.model, base=base) if base else base_artifact(args.model)
    check_available(artifact)
    output_dir = Path(args.output_dir)
    if args.pages:
        pages = load_page_set(args.pages, output_dir / "pages", strict=args.strict,
                              max_pixels=args.max_pixels or DEFAULT_MAX_PIXELS, pdf_dpi=args.pdf_dpi or DEFAULT_PDF_DPI,
                              max_skipped_share=args.max_skipped_share)
        provenance = {"command": command, "sources": [f"`--pages`: `{args.pages}`"],
                      "loaded": loaded_lines([output_dir / "pages" / REPORT_FILE])}
    else:
        from dharma_train.data.synthetic.generate import generate_pages

        pages = generate_pages(output_dir / "pages", 16, seed=0, id_prefix="eval")
        provenance = {"command": command, "sources": ["16 generated synthetic pages (no --pages; seed 0)"]}
    hardware = TrainerConfig(device=args.device)
    hardware.check_hardware()
    model = load_model(artifact, dtype=hardware.model_dtype(), device=hardware.resolved_device())
    processor = load_processor(artifact.processor_location, max_pixels=args.max_pixels)
    metrics = evaluate(model, processor, pages, config, output_dir=output_dir)
    write_json_atomically(output_dir / METRICS, metrics)
    summary = {"run": f"evaluate {args.model}", "evaluation": asdict(config),
               "entries": [{"stage": "model", "kind": "evaluate", "model": artifact.path, "metrics": metrics,
                            "train": {}}]}
    write_report(summary, output_dir / REPORT, provenance=provenance)
    return metrics


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = parse_arguments(argv)
    command = shlex.join(["python", "-m", "dharma_train.evaluation", *(sys.argv[1:] if argv is None else argv)])
    try:
        metrics = run(args, command)
    except DharmaError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    print((Path(args.output_dir) / REPORT).read_text())
    print(f"quality {metrics['quality_score']:.3f}  CER {metrics['cer']:.3f}  "
          f"degeneration {metrics['degeneration_rate']:.1%}  -> {args.output_dir}/metrics.json")


if __name__ == "__main__":
    main()
