"""Check a data source before training on it: `python -m dharma_train.data.check SOURCE [--strict] [--json]`.

    python -m dharma_train.data.check data/DharmaOCR-Benchmark/data           # the benchmark's parquet files
    python -m dharma_train.data.check scans/ --format sidecar --max-pixels 4000000 --output-dir checked/

Prints what a run would do with every row (used, fixed, skipped, with reasons and example rows). Exit status:
0 every row usable, 1 some rows would be skipped, 2 the source cannot be read (or --strict found a bad row).
With --output-dir the checked pages are saved there as a page folder (pages.jsonl + fixed images) and the report
as load_report.json; otherwise nothing is kept.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from dharma_train.data.config import DEFAULT_MAX_PIXELS, DEFAULT_MAX_SKIPPED_SHARE, DEFAULT_PDF_DPI, FORMATS
from dharma_train.data.validation import FIX_REASONS, SKIP_REASONS, UNVERIFIED_SOURCES, LoadReport, SourceReport
from dharma_train.cli.formatting import DefaultsHelpFormatter
from dharma_train.errors import DharmaError


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m dharma_train.data.check", description=__doc__.splitlines()[0],
                                     formatter_class=DefaultsHelpFormatter)
    parser.add_argument("source", help="page folder, parquet file or folder, JSONL, save_to_disk folder, Hub id, "
                                       "or folder of images or PDFs with sidecars; NAME:SPLIT picks a dataset split")
    parser.add_argument("--format", default="auto", choices=FORMATS, help="the source's layout; auto: detected")
    parser.add_argument("--strict", action="store_true", help="stop at the first bad row")
    parser.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS,
                        help="larger images are scaled down to this many pixels (counted as fixed)")
    parser.add_argument("--pdf-dpi", type=int, default=DEFAULT_PDF_DPI,
                        help="PDF pages are rendered at this resolution (lower when over --max-pixels)")
    parser.add_argument("--model", help="the run's model.path (hub id, folder, tiny, tiny-reader): rows longer than "
                                        "its maximum sequence length are skipped as overlong, as a run skips them; "
                                        "without it lengths are not checked")
    parser.add_argument("--max-length", type=int, help="with --model: the run's model.max_length (default: the "
                                                       "model's own limit)")
    parser.add_argument("--output-dir", help="keep the checked pages and load_report.json here")
    parser.add_argument("--json", action="store_true", help="print the report as JSON instead of text")
    return parser.parse_args(argv)


def check(args: argparse.Namespace) -> SourceReport:
    """Load the source the way a run would; the checked pages and the report go to --output-dir when given."""
    from dharma_train.data.loading import REPORT_FILE, load_source
    from dharma_train.data.pages import PageSet
    from dharma_train.files import write_json_atomically

    with tempfile.TemporaryDirectory(prefix="dharma-check-") as scratch:
        folder = Path(args.output_dir) if args.output_dir else Path(scratch)
        loaded = load_source(args.source, folder / "images", format=args.format, strict=args.strict,
                             max_pixels=args.max_pixels, split="checked", pdf_dpi=args.pdf_dpi,
                             bounds=_bounds(args))
        if args.output_dir:
            if loaded.pages:
                PageSet(folder, loaded.pages).save()
            write_json_atomically(folder / REPORT_FILE, LoadReport(sources=[loaded.report]).to_dict())
    return loaded.report


def _bounds(args: argparse.Namespace) -> tuple:
    """The length bound of --model (its processor and config only; no weights load), or none."""
    if args.model is None:
        if args.max_length is not None:
            raise DharmaError("--max-length needs --model: the model's tokenizer and image processor count the tokens")
        return ()
    from dharma_train.data.lengths import length_bound
    from dharma_train.models.config import ModelConfig

    try:
        model = ModelConfig(path=args.model, max_length=args.max_length)
    except ValueError as error:
        raise DharmaError(str(error)) from None
    return (length_bound(model),)


def render(report: SourceReport) -> str:
    """The report as a person reads it: totals, then each reason with its count, meaning and first rows."""
    lines = [f"{report.source} ({report.format}): {report.rows} rows, {report.used} used "
             f"({report.fixed} of them fixed), {report.skipped} skipped"]
    for title, counts, meanings in (("skipped", report.skips, SKIP_REASONS), ("fixed", report.fixes, FIX_REASONS)):
        for reason, count in sorted(counts.items(), key=lambda item: -item[1]):
            lines.append(f"  {title} {reason}: {count} ({meanings[reason]})")
            lines.extend(f"      {example['row']} (id {example['id']}): {example['detail']}"
                         for example in report.examples.get(reason, []))
    if report.ignored_columns:
        lines.append("  columns not used: " + ", ".join(sorted(report.ignored_columns)))
    if report.used:
        lines.append("  tasks: " + ", ".join(f"{k} {v}" for k, v in report.tasks.items()) +
                     "; families: " + ", ".join(f"{k} {v}" for k, v in report.families.items()))
    for source, count in sorted(report.unverified.items()):
        lines.append(f"  unverified answers {source}: {count} ({UNVERIFIED_SOURCES[source]})")
    if report.rows and report.skipped / report.rows > DEFAULT_MAX_SKIPPED_SHARE:
        lines.append(f"  a run would stop on this source: {report.skipped / report.rows:.0%} of its rows skipped, "
                     f"more than data.max_skipped_share ({DEFAULT_MAX_SKIPPED_SHARE})")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    from dharma_train.console import show_progress

    show_progress()  # an entry point: its load lines on stderr
    args = parse_arguments(argv)
    try:
        report = check(args)
    except DharmaError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    print(json.dumps(report.to_dict(), indent=2, ensure_ascii=False) if args.json else render(report))
    sys.exit(1 if report.skipped else 0)


if __name__ == "__main__":
    main()
