"""Validation throughput: generate N rows, run ``ray-adlf data validate`` on them, print rows/s.

python jobs/bench_data.py --rows 100000 [--gzip]
"""

from __future__ import annotations

import argparse
import gzip
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ray_adlf.data.sample import write_sample


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--gzip", action="store_true", help="validate a .jsonl.gz copy")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = write_sample(Path(tmp) / "rows.jsonl", args.rows, seed=1)
        if args.gzip:
            packed = path.with_suffix(".jsonl.gz")
            with path.open("rb") as src, gzip.open(packed, "wb") as dst:
                shutil.copyfileobj(src, dst)
            path = packed
        size_mb = path.stat().st_size / 1e6
        started = time.perf_counter()
        run = subprocess.run(
            [sys.executable, "-m", "ray_adlf.cli", "data", "validate", str(path)],
            capture_output=True,
            text=True,
            check=True,
        )
        wall = time.perf_counter() - started
    print(run.stdout.strip())
    print(
        f"{args.rows:,} rows, {size_mb:.1f} MB: {wall:.2f} s wall for the whole command "
        f"(interpreter start included), {args.rows / wall:,.0f} rows/s end to end"
    )


if __name__ == "__main__":
    main()
