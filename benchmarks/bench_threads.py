"""Thread scaling, peak memory and the fastest tile side per pixel of the published CARL backbone on a CPU
(issue #31, item 4).

Random weights in the published architecture (the cost does not depend on the weights), 13 Sentinel-2 bands,
batch 1, fp32, eager, inference mode. Every thread count runs in its own process:

* ``time``: one process per thread count times the tile sides ``--sizes`` in paired, alternating rounds
  (benchmarks/timing.py), so the sides compare within a round; the result is µs per pixel and images/s;
* ``memory``: one process per thread count and tile side runs one warm forward and reports its peak resident
  memory (``ru_maxrss``: the model, torch and that tile's activations: what a laptop needs for that setting).

Writes ``bench_threads.{json,md,png}`` to ``--out``::

    python benchmarks/bench_threads.py --threads 1,2 --sizes 64,128,256 --out benchmarks/results
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def _model_and_input(size: int) -> tuple[Any, Any, Any]:
    import torch

    import carl_geo
    from carl_geo.models import CARL, published_config

    torch.manual_seed(0)
    model = CARL(published_config()).eval()
    wl = torch.tensor(carl_geo.get_sensor("sentinel2_l1c").wavelengths)
    return model, torch.randn(1, len(wl), size, size), wl


def child_time(threads: int, sizes: list[int], rounds: int, block_seconds: float) -> dict[str, Any]:
    """Seconds per forward of each tile side, paired rounds, in this process with ``threads`` torch threads."""
    import torch

    from timing import time_paired

    torch.set_num_threads(threads)
    model, _, wl = _model_and_input(sizes[0])
    inputs = {s: torch.randn(1, len(wl), s, s) for s in sizes}

    def call(s: int):  # noqa: ANN202
        def run() -> None:
            with torch.inference_mode():
                model(inputs[s], wl)
        return run

    t = time_paired({str(s): call(s) for s in sizes}, rounds=rounds, block_seconds=block_seconds, min_calls=1,
                    warmup=1)
    return {"timing": t.to_dict(), "median_s": {str(s): t.median_seconds(str(s)) for s in sizes},
            "load_text": t.load_text(), "loaded": t.loaded}


def child_memory(threads: int, size: int) -> dict[str, Any]:
    """Peak resident memory (MiB) of this process after building the model and two forwards of one tile."""
    import torch

    torch.set_num_threads(threads)
    model, x, wl = _model_and_input(size)
    with torch.inference_mode():
        for _ in range(2):
            model(x, wl)
    return {"peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}


def run_child(*args: str) -> dict[str, Any]:
    env = {**os.environ, "OMP_NUM_THREADS": args[1]}  # args: kind, threads, ...
    proc = subprocess.run([sys.executable, __file__, "--child", *args], capture_output=True, text=True, env=env,
                          check=False)
    if proc.returncode:
        raise RuntimeError(f"child {args} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", default=None, help="comma-separated (default: 1, 2 and 4, 8 where the machine has them)")
    p.add_argument("--sizes", default="64,128,256")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--block-seconds", type=float, default=3.0)
    p.add_argument("--out", default=str(HERE / "results"))
    p.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        kind, threads = args.child[0], int(args.child[1])
        if kind == "time":
            res = child_time(threads, [int(s) for s in args.child[2].split(",")], int(args.child[3]),
                             float(args.child[4]))
        else:
            res = child_memory(threads, int(args.child[2]))
        print(json.dumps(res))
        return

    cores = os.cpu_count() or 1
    threads = [int(t) for t in args.threads.split(",")] if args.threads else [t for t in (1, 2, 4, 8) if t <= cores]
    sizes = [int(s) for s in args.sizes.split(",")]
    import torch

    meta = {"date": time.strftime("%Y-%m-%d"), "machine": f"{platform.processor() or platform.machine()}, {cores} cores",
            "torch": torch.__version__, "config": "published (random weights)", "bands": 13, "batch": 1,
            "precision": "fp32", "rounds": args.rounds}
    rows = []
    for n in threads:
        timed = run_child("time", str(n), ",".join(map(str, sizes)), str(args.rounds), str(args.block_seconds))
        for s in sizes:
            sec = timed["median_s"][str(s)]
            runs = timed["timing"]["seconds_per_call"][str(s)]
            mem = run_child("memory", str(n), str(s))
            rows.append({"threads": n, "size": s, "median_s": sec, "runs_s": runs, "images_per_s": 1 / sec,
                         "us_per_pixel": 1e6 * sec / (s * s), "peak_rss_mib": mem["peak_rss_mib"],
                         "load": timed["load_text"], "loaded": timed["loaded"]})
            r = rows[-1]
            print(f"{n} thr  {s:4d} px  {r['images_per_s']:7.3f} img/s  {r['us_per_pixel']:7.1f} µs/px  "
                  f"{r['peak_rss_mib']:5d} MiB  ({r['load']})", flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench_threads.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    best = {n: min((r for r in rows if r["threads"] == n), key=lambda r: r["us_per_pixel"]) for n in threads}
    one = {r["size"]: r for r in rows if r["threads"] == threads[0]}
    lines = [f"# Published CARL backbone on a CPU: threads, tile side, memory ({meta['date']}, {meta['machine']}, "
             f"torch {meta['torch']})", "",
             "Random weights in the published architecture, 13 bands, batch 1, fp32 eager, inference mode. Time: "
             f"median of {args.rounds} paired rounds per thread count (the tile sides alternate within a round; "
             "benchmarks/timing.py); memory: peak RSS of a fresh process that built the model and ran that tile "
             "(model + torch + activations).", "",
             "| threads | tile px | ms per tile (rounds) | images/s | µs per pixel | speed-up vs "
             f"{threads[0]} thread(s) | peak RSS MiB | load |", "|---:|---:|---|---:|---:|---:|---:|---|"]
    for r in rows:
        base = one[r["size"]]["median_s"]
        runs = ", ".join(f"{1000 * v:.0f}" for v in r["runs_s"])
        lines.append(f"| {r['threads']} | {r['size']} | {1000 * r['median_s']:.0f} ({runs}) | {r['images_per_s']:.2f} | "
                     f"{r['us_per_pixel']:.1f} | {base / r['median_s']:.2f}x | {r['peak_rss_mib']} | {r['load']} |")
    lines += ["", "Fastest tile side per pixel: " + "; ".join(
        f"{n} thread(s): {b['size']} px ({b['us_per_pixel']:.1f} µs/px)" for n, b in best.items()) + "."]
    (out / "bench_threads.md").write_text("\n".join(lines) + "\n")
    plot(rows, threads, sizes, out / "bench_threads.png")
    print("\n".join(lines))


def plot(rows: list[dict[str, Any]], threads: list[int], sizes: list[int], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    for n in threads:
        mine = [r for r in rows if r["threads"] == n]
        a.plot([r["size"] for r in mine], [r["us_per_pixel"] for r in mine], "o-", label=f"{n} thread(s)")
        b.plot([r["size"] for r in mine], [r["peak_rss_mib"] for r in mine], "o-", label=f"{n} thread(s)")
    a.set(xlabel="tile side (px)", ylabel="µs per pixel (lower is faster)", xticks=sizes,
          title="Published CARL, fp32, CPU")
    b.set(xlabel="tile side (px)", ylabel="peak RSS (MiB)", xticks=sizes, title="Memory of one process")
    a.legend()
    b.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
