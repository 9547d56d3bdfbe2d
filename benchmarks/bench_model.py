"""Model throughput of the CARL backbone: images/s and Mpixel/s per config, band count and mode.

Modes: ``fp32`` (plain float32 eager), ``bf16`` (bf16 autocast, eager), ``bf16-compile``
(bf16 autocast + ``torch.compile``). Writes ``bench_model.json``, ``bench_model.md`` and
``bench_model.png`` (bar chart) to ``--out``.

Examples::

    python benchmarks/bench_model.py --device cpu --configs tiny,published --bands 13,202 --batch 1 --modes fp32
    python benchmarks/bench_model.py --device cuda --configs published --bands 13,202 --batch 32
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

import torch

import carl_geo

sys.path.insert(0, str(Path(__file__).resolve().parent))
from timing import PairedTiming, time_paired  # noqa: E402  (benchmarks/timing.py)


def time_forward(model: torch.nn.Module, x: torch.Tensor, wl: torch.Tensor, mode: str, device: str,
                 warmup: int, iters: int, min_seconds: float, rounds: int = 3) -> tuple[float, float, PairedTiming]:
    """Median seconds per forward over ``rounds`` rounds (benchmarks/timing.py), peak device memory (GiB, CUDA
    only) and the timing record (load before / after)."""
    dtype = torch.bfloat16 if mode.startswith("bf16") else None
    fn = torch.compile(model) if mode.endswith("compile") else model

    def step() -> None:
        with torch.inference_mode(), torch.autocast(device_type=device, dtype=dtype or torch.float32,
                                                    enabled=dtype is not None):
            fn(x, wl)

    cuda = device.startswith("cuda")
    for _ in range(warmup):
        step()
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t = time_paired({"forward": step}, rounds=rounds, block_seconds=min_seconds / rounds,
                    min_calls=max(1, iters // rounds), warmup=0, sync=torch.cuda.synchronize if cuda else None)
    peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else float("nan")
    return t.median_seconds("forward"), peak, t


def write_tables(out: Path, rows: list[dict], device: str) -> str:
    """Write ``bench_model.json`` and ``bench_model.md`` for ``rows``; returns the device name."""
    cuda = device.startswith("cuda")
    device_name = torch.cuda.get_device_name() if cuda else platform.processor() or platform.machine()
    meta = {"device": device_name, "torch": torch.__version__, "threads": torch.get_num_threads()}
    (out / "bench_model.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    lines = [f"Device: {device_name}, torch {torch.__version__}, {meta['threads']} threads", "",
             "ms/batch: median of 3 rounds (benchmarks/timing.py), with the rounds' range.", "",
             "| config | bands | batch | size | mode | ms/batch (range) | images/s | Mpixel/s | peak GiB | load |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['config']} | {r['bands']} | {r['batch']} | {r['size']} | {r['mode']} | {r['ms_per_batch']:.1f} "
              f"({1000 * min(r.get('rounds_s') or [0]):.0f}-{1000 * max(r.get('rounds_s') or [0]):.0f}) | "
              f"{r['images_per_s']:.1f} | {r['mpixel_per_s']:.3f} | {r['peak_gib']:.2f} | "
              f"{r.get('load_before')} -> {r.get('load_after')}{' LOADED' if r.get('loaded') else ''} |" for r in rows]
    (out / "bench_model.md").write_text("\n".join(lines) + "\n")
    return device_name


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--configs", default="tiny,published")
    p.add_argument("--bands", default="13,202")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--modes", default="fp32,bf16,bf16-compile")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--min-seconds", type=float, default=2.0)
    p.add_argument("--out", default="benchmarks/results")
    args = p.parse_args()

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for cfg in args.configs.split(","):
        model = carl_geo.CARL(carl_geo.get_config(cfg)).eval().to(args.device)
        for c in (int(b) for b in args.bands.split(",")):
            x = torch.randn(args.batch, c, args.size, args.size, device=args.device)
            wl = torch.linspace(0.4, 2.4, c, device=args.device)
            for mode in args.modes.split(","):
                try:
                    sec, peak, timing = time_forward(model, x, wl, mode, args.device, args.warmup, args.iters,
                                                     args.min_seconds)
                except Exception as exc:  # e.g. no C compiler for torch.compile, out of memory: go on
                    print(f"{cfg:9s} C={c:3d} B={args.batch:2d} {mode:13s} FAILED: {type(exc).__name__}: "
                          f"{str(exc).splitlines()[0] if str(exc) else ''}", flush=True)
                    if args.device.startswith("cuda"):
                        torch.cuda.empty_cache()
                    continue
                row = {"config": cfg, "bands": c, "batch": args.batch, "size": args.size, "mode": mode,
                       "ms_per_batch": 1000 * sec, "images_per_s": args.batch / sec,
                       "mpixel_per_s": args.batch * args.size**2 / sec / 1e6, "peak_gib": peak,
                       "rounds_s": timing.seconds["forward"], "load_before": timing.load_before,
                       "load_after": timing.load_after, "loaded": timing.loaded}
                rows.append(row)
                print(f"{cfg:9s} C={c:3d} B={args.batch:2d} {mode:13s} {row['ms_per_batch']:9.1f} ms/batch "
                      f"{row['images_per_s']:8.1f} img/s {row['mpixel_per_s']:7.3f} Mpx/s peak {peak:.2f} GiB", flush=True)
                write_tables(out, rows, args.device)  # after every row: a time-boxed run keeps what it measured

    device_name = write_tables(out, rows, args.device)

    try:
        import matplotlib
    except ImportError:
        print("matplotlib not installed: no PNG")
        return
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(6, len(rows) * 0.9), 4))
    labels = [f"{r['config']}\nC={r['bands']}\n{r['mode']}" for r in rows]
    ax.bar(range(len(rows)), [r["images_per_s"] for r in rows], color="tab:blue")
    ax.set_xticks(range(len(rows)), labels, fontsize=7)
    ax.set_ylabel("images / s")
    ax.set_title(f"CARL forward, {args.size}x{args.size}, batch {args.batch}, {device_name}")
    fig.tight_layout()
    fig.savefig(out / "bench_model.png", dpi=120)
    print(f"wrote {out}/bench_model.{{json,md,png}}")


if __name__ == "__main__":
    main()
