"""How fast the synthetic page generator is on a CPU: pages per second in one process, and over N processes.

Pages: 1024 px long side (724 x 1024, A4), the three Portuguese families in turn, degraded, with the CLI's word
budget for that size, written as PNG (and JPEG with --format jpg). One warm-up set first so font loading and the
first word masks are not counted; then a timed set in one process and a timed set with --workers processes.

Rates: pages per wall-clock second for both sets, and pages per CPU-second of the one-process set (its own CPU
time, from getrusage). On a machine other jobs share, the CPU-second rate is the per-core figure: it does not
fall when the cores are busy with someone else's work; the load average printed beside each set says how busy
they were. (Worker processes are forked by multiprocessing's fork server, not by this process, so their CPU
time is not visible here: the parallel set is timed by the clock only.)

    python -m scripts.benchmarks.bench_generator --pages 200 --workers 2
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

    import numpy
    import PIL

    from dharma_train.data.synthetic.generate import default_max_words, generate_pages, page_size

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
        result = {"pages": len(pages), "wall_seconds": round(seconds, 2),
                  "pages_per_second": round(len(pages) / seconds, 1),
                  "megabytes_per_page": round(megabytes / len(pages), 3),
                  "load_average_1min": round(os.getloadavg()[0], 2)}
        line = f"{len(pages) / seconds:.1f} pages/s"
        if workers == 1:
            result.update(cpu_seconds=round(cpu, 2), pages_per_cpu_second=round(len(pages) / cpu, 1))
            line += f", {len(pages) / cpu:.1f} pages per CPU-second"
        results[workers] = result
        print(f"{workers} process(es): {len(pages)} pages of {width}x{height} in {seconds:.1f} s: {line}; "
              f"{megabytes / len(pages):.2f} MB per page; load average {os.getloadavg()[0]:.1f}", flush=True)
    summary = {"date": date.today().isoformat(), "machine": f"{platform.processor() or platform.machine()}, "
               f"{os.cpu_count()} cores", "python": platform.python_version(), "pillow": PIL.__version__,
               "numpy": numpy.__version__, "size": [width, height], "families": families, "format": args.format,
               "results": results}
    print(json.dumps(summary, indent=2))


def _cpu_seconds() -> float:
    """User + system time of this process."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    return own.ru_utime + own.ru_stime


if __name__ == "__main__":
    main()
