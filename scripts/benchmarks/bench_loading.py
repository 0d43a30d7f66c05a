"""How fast the loader checks benchmark-format rows on a CPU: rows per second, first load and reload.

Writes a parquet in the DharmaOCR-Benchmark layout (each row holds its page twice, as `image` bytes and as
`image_base64`, like the real one) from synthetic pages at a realistic size, then times `load_source` on it:
once into an empty image store (every image decoded, checked and written) and once more into the same store
(decoded and checked again, nothing rewritten). `--oversize` makes every page larger than the pixel budget, so
each one is also scaled down and re-encoded.

    python -m scripts.benchmarks.bench_loading --rows 32 --width 1240 --height 1754
    python -m scripts.benchmarks.bench_loading --rows 8 --width 3900 --height 5500 --oversize
"""

from __future__ import annotations

import argparse
import base64
import json
import platform
import tempfile
import time
from pathlib import Path


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=32)
    parser.add_argument("--width", type=int, default=1240)  # A4 at 150 dpi
    parser.add_argument("--height", type=int, default=1754)
    parser.add_argument("--oversize", action="store_true", help="pages over data.max_pixels (resized on load)")
    args = parser.parse_args()

    import datasets
    import PIL

    from dharma_train.data.config import DEFAULT_MAX_PIXELS
    from dharma_train.data.loading import load_source
    from dharma_train.data.synthetic.generate import generate_pages

    work = Path(tempfile.mkdtemp(prefix="bench-loading-"))
    pages = generate_pages(work / "pages", args.rows, seed=0, width=args.width, height=args.height)
    rows = []
    for page in pages:
        data = page.image.read_bytes()
        rows.append({"id": len(rows), "image": {"bytes": data, "path": None},
                     "image_base64": base64.b64encode(data).decode(), "assistant": page.answer.to_json(),
                     "assistant_without_json": page.answer.to_plain_text()})
    features = datasets.Features({"id": datasets.Value("int64"), "image": datasets.Image(),
                                  "image_base64": datasets.Value("string"), "assistant": datasets.Value("string"),
                                  "assistant_without_json": datasets.Value("string")})
    parquet = work / "bench.parquet"
    datasets.Dataset.from_list(rows, features=features).to_parquet(str(parquet))
    max_pixels = args.width * args.height // 2 if args.oversize else DEFAULT_MAX_PIXELS

    timings = {}
    for label in ("first load", "reload"):
        started, cpu = time.perf_counter(), time.process_time()
        loaded = load_source(parquet, work / "store", max_pixels=max_pixels)
        timings[label] = (time.perf_counter() - started, time.process_time() - cpu)
        assert loaded.report.used == args.rows, loaded.report.summary_line()
    result = {
        "rows": args.rows, "page": f"{args.width}x{args.height}", "max_pixels": max_pixels,
        "mean_png_kib": round(sum(len(r["image"]["bytes"]) for r in rows) / len(rows) / 1024),
        "parquet_mib": round(parquet.stat().st_size / 2**20, 1),
        "fixes": dict(loaded.report.fixes),
        **{f"{label} rows/s": round(args.rows / wall, 1) for label, (wall, _) in timings.items()},
        **{f"{label} CPU ms/row": round(1000 * cpu / args.rows) for label, (_, cpu) in timings.items()},
        "machine": f"{platform.processor() or platform.machine()}, python {platform.python_version()}",
        "versions": f"datasets {datasets.__version__}, pillow {PIL.__version__}",
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
