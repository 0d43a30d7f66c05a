"""Synthetic page sets from the command line.

    python -m dharma_train.data generate --output-dir pages --pages 1000 --size 1024 --workers 8
    python -m dharma_train.data generate --output-dir general --pages 500 --task general
    python -m dharma_train.data contact-sheet pages --output sheet.png
    python -m dharma_train.data pdf-text gazettes/ --output-dir silver --header-band 0.1

`generate` writes DIR/images/* and DIR/pages.jsonl (the page folder every stage and `data.train` read);
`contact-sheet` draws a few pages of a folder beside their ground truth; `pdf-text` turns born-digital PDFs into a
page folder whose answers are their text layers (silver training data: unverified, never a reference to evaluate
against). Bad arguments exit with status 2 and one line saying what is wrong.
"""

from __future__ import annotations

import argparse
import sys

from dharma_train.data.config import DEFAULT_MAX_PIXELS, DEFAULT_PDF_DPI
from dharma_train.data.prompts import TASKS
from dharma_train.data.synthetic.generate import (
    ALL_FAMILIES,
    IMAGE_FORMATS,
    default_families,
    default_max_words,
    generate_pages,
    page_size,
)
from dharma_train.cli.formatting import DefaultsHelpFormatter
from dharma_train.errors import DharmaError


def main(argv: list[str] | None = None) -> int:
    from dharma_train.console import show_progress

    show_progress()  # an entry point: its load lines on stderr
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "generate":
            return _generate(args, parser)
        if args.command == "pdf-text":
            return _pdf_text(args)
        return _contact_sheet(args)
    except (DharmaError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


def _generate(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    families = tuple(name.strip() for name in args.families.split(",") if name.strip()) if args.families \
        else default_families(args.task)
    unknown = sorted(set(families) - set(ALL_FAMILIES))
    if unknown or not families:
        parser.error(f"--families: unknown famil(ies) {unknown or [args.families]}; choose from {list(ALL_FAMILIES)}")
    if args.size < 56:
        parser.error(f"--size must be at least 56 pixels, got {args.size}")
    width, height = page_size(args.size)
    pages = generate_pages(args.out, args.pages, seed=args.seed, width=width, height=height, families=families,
                           task=args.task, id_prefix=args.id_prefix, degrade=not args.clean,
                           max_words=args.max_words or default_max_words(args.size), workers=args.workers,
                           image_format=args.format, progress=True)
    print(f"{len(pages)} pages ({', '.join(families)}; task {args.task}; {width}x{height}) in {pages.root}")
    return 0


def _contact_sheet(args: argparse.Namespace) -> int:
    from dharma_train.data.synthetic.contact_sheet import write_contact_sheet

    path = write_contact_sheet(args.folder, args.out, count=args.count, columns=args.columns)
    print(f"contact sheet of {args.folder} written to {path}")
    return 0


def _pdf_text(args: argparse.Namespace) -> int:
    from dharma_train.data.pdf_text import Bands
    from dharma_train.data.text_layer_pages import REPORT_FILE, text_layer_pages

    bands = Bands(header=args.header_band, footer=args.footer_band, margin=args.margin_band)
    pages, report = text_layer_pages(args.source, args.out, bands=bands, dpi=args.dpi, max_pixels=args.max_pixels,
                                     family=args.family)
    print(f"{args.source} (pdf-text): {report.summary_line()}")
    print(f"{len(pages)} pages in {pages.root}, answers from the PDFs' text layers: silver data, unverified (train on "
          f"them; evaluate on pages a person transcribed); report: {pages.root / REPORT_FILE}")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m dharma_train.data", description=__doc__.splitlines()[0],
                                     formatter_class=DefaultsHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    generate = commands.add_parser("generate", help="write a folder of synthetic pages and their ground truth",
                                   formatter_class=DefaultsHelpFormatter)
    generate.add_argument("--output-dir", "--out", dest="out", required=True,
                          help="folder to write (images/ and pages.jsonl)")
    generate.add_argument("--pages", type=int, required=True, help="how many pages")
    generate.add_argument("--families", default=None,
                          help=f"comma-separated, taking turns: some of {','.join(ALL_FAMILIES)} "
                               "(default: printed,handwritten,legal; general for --task general)")
    generate.add_argument("--task", default="structured", choices=TASKS,
                          help="what the pages train: structured (JSON schema), plain (transcription), "
                               "general (Markdown, mixed-language pages)")
    generate.add_argument("--size", type=int, default=1024, help="long side of an A4 page in pixels")
    generate.add_argument("--max-words", type=int, default=None,
                          help="body words per page at most (default: fills the page, about size / 5)")
    generate.add_argument("--workers", type=int, default=1, help="processes (output is identical for any number)")
    generate.add_argument("--seed", type=int, default=0, help="the same seed gives the same pages, byte for byte")
    generate.add_argument("--format", default="png", choices=IMAGE_FORMATS, help="image files: png or jpg")
    generate.add_argument("--clean", action="store_true", help="no scan or photo degradation")
    generate.add_argument("--id-prefix", default="page", help="page ids are PREFIX-00000, PREFIX-00001, ...")
    sheet = commands.add_parser("contact-sheet", help="a PNG of some pages beside their ground truth",
                                formatter_class=DefaultsHelpFormatter)
    sheet.add_argument("folder", help="a page folder (pages.jsonl beside the images)")
    sheet.add_argument("--output", "--out", dest="out", required=True, help="PNG file to write")
    sheet.add_argument("--count", type=int, default=8, help="pages on the sheet (spread over the families)")
    sheet.add_argument("--columns", type=int, default=2, help="pages per row of the sheet")
    text = commands.add_parser("pdf-text", help="born-digital PDFs to a page folder answered by their text layers "
                                                "(silver training data)", formatter_class=DefaultsHelpFormatter)
    text.add_argument("source", help="a folder of PDFs (any depth) or one PDF")
    text.add_argument("--output-dir", "--out", dest="out", required=True,
                      help="folder to write (images/, pages.jsonl, pdf_text_report.json)")
    text.add_argument("--header-band", type=float, default=0.08,
                      help="a line entirely in this top share of the page is header")
    text.add_argument("--footer-band", type=float, default=0.08,
                      help="a line entirely in this bottom share of the page is footer")
    text.add_argument("--margin-band", type=float, default=0.08,
                      help="a line entirely in this left or right share of the page is margin")
    text.add_argument("--dpi", type=int, default=DEFAULT_PDF_DPI, help="resolution pages are rendered at")
    text.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS,
                      help="pages are rendered at a lower resolution when over this many pixels")
    text.add_argument("--family", default="printed", help="the family of every page (per-family metrics)")
    return parser


if __name__ == "__main__":
    sys.exit(main())
