"""How long checking a finished stage's weights takes: `files.file_hash` (xxh3-128, what manifests record) against
hashlib's sha256 and blake2b, on one file of random bytes, twice each (the second read comes from the page cache).

    python -m scripts.benchmarks.bench_file_hash --gigabytes 1 --file /tmp/hash_bench.bin
"""

from __future__ import annotations

import argparse
import hashlib
import os
import time
from pathlib import Path

from dharma_train.files import HASH_BLOCK, file_hash


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gigabytes", type=float, default=1.0)
    parser.add_argument("--file", type=Path, default=Path("/tmp/dharma_hash_bench.bin"))
    args = parser.parse_args()
    size = int(args.gigabytes * 1024**3)
    if not args.file.is_file() or args.file.stat().st_size != size:
        with args.file.open("wb") as handle:
            for _ in range(size // HASH_BLOCK):
                handle.write(os.urandom(HASH_BLOCK))
    for name, hash_file in (("xxh3_128 (files.file_hash)", file_hash),
                            ("sha256", lambda p: file_hash(p, hashlib.sha256)),
                            ("blake2b", lambda p: file_hash(p, hashlib.blake2b))):
        for attempt in (1, 2):
            started = time.perf_counter()
            hash_file(args.file)
            seconds = time.perf_counter() - started
            print(f"{name:28s} run {attempt}: {seconds:6.3f} s, {size / 1024**3 / seconds:5.2f} GiB/s")


if __name__ == "__main__":
    main()
