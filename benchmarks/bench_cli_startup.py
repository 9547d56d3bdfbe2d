"""Wall time of ``carl-geo`` calls that should answer at once: ``--help``, a sub-command's
``--help`` and an argument error (median of ``--repeat`` fresh processes). Writes
``bench_cli_startup.json`` under ``--out``.

    python benchmarks/bench_cli_startup.py --repeat 5

Issue #20, 2-core CPU machine shared with other jobs, median of 3-5 runs: 14.3-14.9 s per call before
the CLI and the packages imported lazily (6.7-7.2 s on a quieter moment), 0.27-0.31 s after.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CALLS = {
    "carl-geo --help": ["--help"],
    "carl-geo predict --help": ["predict", "--help"],
    "carl-geo train --help": ["train", "--help"],
    "carl-geo predict (argument error)": ["predict"],
    "carl-geo train --epochs x (argument error)": ["train", "--epochs", "x"],
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = p.parse_args()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    results = {}
    for name, argv in CALLS.items():
        times = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-m", "carl_geo.cli", *argv], env=env, capture_output=True)
            times.append(time.perf_counter() - t0)
        results[name] = {"median_s": round(statistics.median(times), 3), "max_s": round(max(times), 3)}
        print(f"{name:45s} median {results[name]['median_s']:.2f} s (max {results[name]['max_s']:.2f} s)")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench_cli_startup.json").write_text(json.dumps({"repeat": args.repeat, "calls": results}, indent=2))


if __name__ == "__main__":
    main()
