"""carl_geo's CARL vs the upstream reference implementation (github IMSY-DKFZ/CARL), same weights.

Builds the upstream ``CARLModel`` from a local checkout (``--upstream``: the folder that holds the
``carl`` package; nothing is downloaded: timm's ``pretrained=True`` is switched off), copies
carl_geo's randomly initialised weights into it, checks that both give the same output, and times
both forwards per mode (``fp32`` eager, ``bf16`` autocast eager, ``bf16-compile``) in alternating
paired rounds (benchmarks/timing.py: the speed-up is the median of per-round ratios, with its range). Writes
``bench_vs_upstream.json`` / ``.md`` / ``.png`` to ``--out``.

Examples::

    python benchmarks/bench_vs_upstream.py --upstream /path/to/CARL --device cpu --configs tiny,published \\
        --bands 13 --shapes 2x128,4x256 --modes fp32
    python benchmarks/bench_vs_upstream.py --upstream /path/to/CARL --device cuda --configs published \\
        --bands 13,202 --batch 32 --modes fp32,bf16,bf16-compile
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


def upstream_model(upstream: Path, config: carl_geo.CARLConfig) -> torch.nn.Module:
    """The upstream ``CARLModel`` for ``config``, built offline (random timm init)."""
    import timm

    sys.path.insert(0, str(upstream))
    import carl.modules.spatial_encoder as spatial  # upstream

    create = timm.create_model

    def offline(name: str, pretrained: bool = False, **kwargs):
        return create(name.removeprefix("timm/").split(".")[0], pretrained=False, **kwargs)

    spatial.timm.create_model = offline
    from carl.model.carl import CARLModel

    return CARLModel(**config.to_upstream())


def copy_weights(ours: torch.nn.Module, theirs: torch.nn.Module) -> list[str]:
    """Load carl_geo's state dict into the upstream model (shapes adapted where layouts differ);
    returns the upstream keys that got no value."""
    src = ours.state_dict()
    dst = theirs.state_dict()
    missing = []
    for k, v in dst.items():
        if k in src and src[k].numel() == v.numel():
            dst[k] = src[k].reshape(v.shape).clone()
        else:
            missing.append(k)
    theirs.load_state_dict(dst)
    return missing


def time_forwards(fns: dict, x: torch.Tensor, wl: torch.Tensor, mode: str, device: str, min_seconds: float,
                  rounds: int = 5) -> PairedTiming:
    """Seconds per forward of each of ``fns`` in paired, alternating rounds (:mod:`timing`), two warm-up calls
    each; ``min_seconds`` per implementation in all."""
    dtype = torch.bfloat16 if mode.startswith("bf16") else None

    def step(fn):
        def call() -> None:
            with torch.inference_mode(), torch.autocast(device_type=device, dtype=dtype or torch.float32,
                                                        enabled=dtype is not None):
                fn(x, wl)
        return call

    sync = torch.cuda.synchronize if device == "cuda" else None
    return time_paired({k: step(fn) for k, fn in fns.items()}, rounds=rounds, block_seconds=min_seconds / rounds,
                       sync=sync)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--upstream", required=True, type=Path, help="folder holding upstream's `carl` package")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--configs", default="tiny,published")
    p.add_argument("--bands", default="13")
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--shapes", default=None, metavar="BxS,...",
                   help="batch x tile side pairs, e.g. 2x128,4x256 (4 x 256 is the predictor's CPU default); "
                        "overrides --batch and --size")
    p.add_argument("--modes", default="fp32")
    p.add_argument("--min-seconds", type=float, default=5.0, help="per implementation and mode")
    p.add_argument("--out", default="benchmarks/results")
    args = p.parse_args()

    shapes = ([tuple(int(v) for v in item.lower().split("x")) for item in args.shapes.split(",")]
              if args.shapes else [(args.batch, args.size)])
    rows = []
    for cfg_name in args.configs.split(","):
        config = carl_geo.get_config(cfg_name)
        torch.manual_seed(0)
        ours = carl_geo.CARL(config).eval().to(args.device)
        theirs = upstream_model(args.upstream, config).eval().to(args.device)
        missing = copy_weights(ours, theirs)
        for (batch, size), c in ((shape, int(b)) for shape in shapes for b in args.bands.split(",")):
            x = torch.randn(batch, c, size, size, device=args.device)
            wl = torch.linspace(0.4, 2.4, c, device=args.device).expand(batch, c)
            with torch.inference_mode():
                diff = (ours(x, wl).spatial - theirs(x, wl)[0]).abs().max().item()
            for mode in args.modes.split(","):
                compile_ = mode.endswith("compile")
                fns = {"carl_geo": ours, "upstream": theirs}
                fns = {k: torch.compile(m) if compile_ else m for k, m in fns.items()}
                t = time_forwards(fns, x, wl, mode, args.device, args.min_seconds)
                ratio = t.speedup("carl_geo", "upstream")
                row = {"config": cfg_name, "bands": c, "batch": batch, "size": size, "mode": mode,
                       "carl_geo_images_per_s": batch / t.median_seconds("carl_geo"),
                       "upstream_images_per_s": batch / t.median_seconds("upstream"),
                       "speedup": ratio.median, "speedup_range": [ratio.low, ratio.high], "timing": t.to_dict(),
                       "max_abs_diff_fp32": diff, "unmatched_upstream_keys": missing}
                rows.append(row)
                print(f"{cfg_name:9s} C={c:3d} B={batch} {size}px {mode:13s} carl_geo {row['carl_geo_images_per_s']:8.2f} "
                      f"img/s  upstream {row['upstream_images_per_s']:8.2f} img/s  {ratio}  "
                      f"max|diff| {diff:.1e}  {t.load_text()}", flush=True)

    device = torch.cuda.get_device_name() if args.device == "cuda" else platform.processor() or platform.machine()
    meta = {"device": device, "torch": torch.__version__, "threads": torch.get_num_threads()}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench_vs_upstream.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    lines = [f"carl_geo vs upstream CARL, {device}, torch {torch.__version__}, "
             f"{meta['threads']} threads", "",
             "Speed-up: median of the per-round ratios (upstream s / carl_geo s, same round) and their range; "
             "img/s: medians.", "",
             "| config | bands | batch | tile px | mode | carl_geo img/s | upstream img/s | speed-up (range) | load | "
             "max abs diff (fp32) |",
             "|---|---:|---:|---:|---|---:|---:|---:|---|---:|"]
    lines += [f"| {r['config']} | {r['bands']} | {r['batch']} | {r['size']} | {r['mode']} | {r['carl_geo_images_per_s']:.2f} | "
              f"{r['upstream_images_per_s']:.2f} | {r['speedup']:.2f} ({r['speedup_range'][0]:.2f}-"
              f"{r['speedup_range'][1]:.2f}) | {r['timing']['load_before']} -> {r['timing']['load_after']}"
              f"{' LOADED' if r['timing']['loaded'] else ''} | {r['max_abs_diff_fp32']:.1e} |" for r in rows]
    (out / "bench_vs_upstream.md").write_text("\n".join(lines) + "\n")

    plot(rows, out, device)


def plot(rows: list[dict], out: Path, device: str) -> None:
    """``bench_vs_upstream.png``: speed-up over upstream per row (median of the paired rounds, bars from the
    slowest to the fastest round), 1.0 = parity."""
    try:
        import matplotlib
    except ImportError:
        print("matplotlib not installed: no PNG")
        return
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(6, 1.4 * len(rows)), 4))
    xs = list(range(len(rows)))
    med = [r["speedup"] for r in rows]
    err = [[m - r["speedup_range"][0] for m, r in zip(med, rows)], [r["speedup_range"][1] - m for m, r in zip(med, rows)]]
    ax.bar(xs, med, 0.6, yerr=err, capsize=4, color="tab:orange", label="carl_geo / upstream (median, round range)")
    ax.axhline(1.0, color="k", lw=1, ls="--", label="parity")
    for x, m in zip(xs, med):
        ax.text(x, 0.05, f"{m:.2f}x", ha="center", va="bottom", fontsize=9)
    ax.set_xticks(xs, [f"{r['config']}\nC={r['bands']}, {r['batch']}x{r['size']}px\n{r['mode']}" for r in rows],
                  fontsize=8)
    ax.set_ylabel("speed-up over upstream (same weights)")
    ax.set_title(f"CARL forward, carl_geo vs upstream, {device}")
    ax.set_ylim(0, max(1.5, max(r["speedup_range"][1] for r in rows) * 1.25))
    ax.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    fig.savefig(out / "bench_vs_upstream.png", dpi=120)
    print(f"wrote {out}/bench_vs_upstream.{{json,md,png}}")


if __name__ == "__main__":
    main()
