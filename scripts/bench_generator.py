"""How fast the synthetic page generator is on a CPU: pages per second in one process, and over N processes.

Pages: 1024 px long side (724 x 1024, A4), the three Portuguese families in turn, degraded, with the CLI's word
budget for that size, written as PNG (and JPEG with --format jpg). One warm-up set first so font loading and the
first word masks are not counted; then a timed set in one process and a timed set with --workers processes.

Two rates per set: pages per wall-clock second, and pages per CPU-second (CPU time of this process and of its
worker processes, from getrusage). On a machine other jobs share, the second is the per-core figure: it does
not fall when the cores are busy with someone else's work.

    python scripts/bench_generator.py --pages 200 --workers 2
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import tempfile
import time
from datetime import date
from pathlib import Path


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=200, help="pages per timed set")
    parser.add_argument("--size", type=int, default=1024, help="long side of a page in pixels")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes for the parallel set")
    parser.add_argument("--format", default="png", choices=("png", "jpg"))
    parser.add_argument("--families", default="printed,handwritten,legal")
    args = parser.parse_args()

    import PIL
    import numpy

    from dharma_train.data.synthetic import default_max_words, generate_pages, page_size

    width, height = page_size(args.size)
    families = tuple(args.families.split(","))
    options = dict(width=width, height=height, families=families, max_words=default_max_words(args.size),
                   image_format=args.format, progress=False)
    work = Path(tempfile.mkdtemp(prefix="bench_generator_"))
    generate_pages(work / "warmup", 24, seed=12345, **options)

    results = {}
    for workers in sorted({1, args.workers}):
        cpu_before, started = _cpu_seconds(), time.perf_counter()
        pages = generate_pages(work / f"workers{workers}", args.pages, seed=0, workers=workers, **options)
        seconds, cpu = time.perf_counter() - started, _cpu_seconds() - cpu_before
        megabytes = sum(page.image.stat().st_size for page in pages) / 1e6
        results[workers] = {"pages": len(pages), "wall_seconds": round(seconds, 2), "cpu_seconds": round(cpu, 2),
                            "pages_per_second": round(len(pages) / seconds, 1),
                            "pages_per_cpu_second": round(len(pages) / cpu, 1),
                            "megabytes_per_page": round(megabytes / len(pages), 3)}
        print(f"{workers} process(es): {len(pages)} pages of {width}x{height} in {seconds:.1f} s wall, "
              f"{cpu:.1f} CPU-s = {len(pages) / seconds:.1f} pages/s, {len(pages) / cpu:.1f} pages per CPU-second; "
              f"{megabytes / len(pages):.2f} MB per page", flush=True)
    summary = {"date": date.today().isoformat(), "machine": f"{platform.processor() or platform.machine()}, "
               f"{os.cpu_count()} cores", "python": platform.python_version(), "pillow": PIL.__version__,
               "numpy": numpy.__version__, "size": [width, height], "families": families, "format": args.format,
               "results": results}
    print(json.dumps(summary, indent=2))


def _cpu_seconds() -> float:
    """User + system time of this process and of its finished children (the worker processes)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


if __name__ == "__main__":
    main()
