"""Throughput and memory of the tiled predictor (:func:`carl_geo.inference.predict_raster`).

Measures, in one run:

(a) bare model throughput: a randomly initialised CARL segmenter (``--config tiny|published``) on
    random (B, 13, T, T) tensors already on ``--device`` (tiles/s and Mpixel/s), with the same
    tile size, batch size, ``--precision``, ``--compile`` and softmax as (b);
(b) end-to-end predictor throughput on a generated 13-band uint16 GeoTIFF (``--size`` px square):
    reading, normalising, tiling, the model, blending and writing a class map;
    reported as raster Mpixel/s and as model tiles/s;
(c) peak RSS (``ru_maxrss``) of the predictor for two raster sizes (``--mem-sizes``), each in a fresh
    subprocess, to show that memory does not grow with the raster.

On CUDA both are timed with ``torch.cuda.synchronize()`` and report the peak GPU memory
(``torch.cuda.max_memory_allocated``). The "model share" of (b) (time inside the model's forward
over wall time) is measured only for eager CPU runs: on a GPU the forward returns before the work
is done, so there only the ratios below are meaningful.

Two ratios are printed:

* ``tiles/s b / a``: pipeline efficiency (the predictor's overhead around the same model calls);
* ``Mpx/s b / a``: raster pixels per second relative to the bare model, which also pays for the
  pixels recomputed in the tile overlaps: at most ``raster px / (tiles * T^2)``, about
  ``((T - O) / T)^2`` for an overlap of O px (0.56 at T=256, O=64; 0.77 at O=32; 1.0 at O=0).

The memory runs use a per-pixel model (``--mem-model pointwise``, a 1x1 convolution) so that an
8192^2 raster finishes in minutes on a laptop CPU: the model's own memory is fixed by tile and batch
size, the quantity under test is the predictor's buffers. ``--mem-model tiny`` uses the tiny CARL.

Writes ``bench_predictor.json``, ``bench_predictor.md`` and ``bench_predictor.png`` (bar chart, model
only vs end to end, Mpixel/s and tiles/s) to ``--out``.

Examples::

    python benchmarks/bench_predictor.py --size 2048 --out results/
    python benchmarks/bench_predictor.py --size 4096 --mem-sizes 2048,8192 --overlaps 64,32,0 --out results/
    python benchmarks/bench_predictor.py --device cuda --config published --precision bf16 --compile \
        --size 8192 --batch-size 32 --mem-sizes '' --min-seconds 3 --out results/gpu
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

BANDS = 13
NUM_CLASSES = 8


def generate_raster(path: Path, size: int, bands: int = BANDS, seed: int = 0) -> Path:
    """A ``size`` x ``size`` uint16 GeoTIFF (tiled 256, deflate) with smooth fields plus noise,
    written in row strips (memory independent of ``size``). Reused when it already exists."""
    import rasterio
    from rasterio.transform import from_origin
    from rasterio.windows import Window

    import carl_geo

    if path.exists():
        with rasterio.open(path) as ds:
            if ds.width == size and ds.height == size and ds.count == bands:
                return path
    rng = np.random.default_rng(seed)
    freq = rng.uniform(0.002, 0.02, size=(bands, 2))
    phase = rng.uniform(0, 6, size=(bands, 2))
    base = rng.uniform(500, 3000, size=bands)
    wl = carl_geo.get_sensor("sentinel2_l1c").wavelengths
    tmp = path.with_name(path.name + ".partial")
    strip = 256
    x = np.arange(size, dtype=np.float32)
    with rasterio.open(tmp, "w", driver="GTiff", width=size, height=size, count=bands, dtype="uint16",
                       crs="EPSG:32632", transform=from_origin(300000, 5200000, 10, 10), nodata=0, tiled=True,
                       blockxsize=256, blockysize=256, compress="deflate", bigtiff="if_safer",
                       num_threads="all_cpus") as dst:
        for r0 in range(0, size, strip):
            h = min(strip, size - r0)
            y = np.arange(r0, r0 + h, dtype=np.float32)[:, None]
            block = np.empty((bands, h, size), dtype=np.uint16)
            for b in range(bands):
                field = base[b] + 600 * np.sin(freq[b, 0] * y + phase[b, 0]) * np.cos(freq[b, 1] * x + phase[b, 1])
                block[b] = np.clip(field + rng.normal(0, 40, size=(h, size)), 1, 65535).astype(np.uint16)
            dst.write(block, window=Window(0, r0, size, h))
        for b in range(bands):
            dst.update_tags(b + 1, ns="IMAGERY", CENTRAL_WAVELENGTH_UM=str(wl[b]))
    os.replace(tmp, path)
    return path


@functools.lru_cache(maxsize=2)
def seg_bundle(config: str = "tiny", num_classes: int = NUM_CLASSES):
    """A randomly initialised CARL segmenter (``config``: tiny or published) as a model bundle."""
    import torch

    import carl_geo

    torch.manual_seed(0)
    seg = carl_geo.CARLSegmenter(carl_geo.CARL(carl_geo.get_config(config)), num_classes).eval()
    return carl_geo.make_bundle(seg, normalization={"mode": "fixed", "mean": 1800.0, "std": 700.0})


def tiny_bundle(num_classes: int = NUM_CLASSES):
    return seg_bundle("tiny", num_classes)


@dataclasses.dataclass(frozen=True)
class Setting:
    """Model, device and speed options shared by (a) and (b)."""

    config: str = "tiny"
    device: str = "cpu"
    precision: str = "fp32"
    compile: bool = False


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _peak_gib(device: str) -> float:
    import torch

    return torch.cuda.max_memory_allocated() / 2**30 if device.startswith("cuda") else float("nan")


def _reset_peak(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()


class Pointwise:
    """Factory for a per-pixel model (1x1 convolution), picklable at module level."""

    @staticmethod
    def build(bands: int = BANDS, num_classes: int = NUM_CLASSES):
        import torch
        from torch import nn

        class _Pointwise(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.conv = nn.Conv2d(bands, num_classes, 1)

            def forward(self, img: torch.Tensor, wavelengths: torch.Tensor) -> torch.Tensor:
                return self.conv(img)

        torch.manual_seed(0)
        return _Pointwise().eval()


_COMPILED: dict = {}


def bench_model(tile: int, batch: int, min_seconds: float, setting: Setting = Setting()) -> dict:
    """(a) tiles/s of the bare CARL segmenter on random batches already on the device (same
    precision, compile setting and softmax as the predictor)."""
    import torch

    import carl_geo

    model = seg_bundle(setting.config).model.to(setting.device)
    if setting.compile:
        model = _COMPILED.setdefault(setting, torch.compile(model, dynamic=False))
    x = torch.randn(batch, BANDS, tile, tile, device=setting.device)
    wl = torch.tensor(carl_geo.get_sensor("sentinel2_l1c").wavelengths, device=setting.device)
    dtype = torch.bfloat16 if setting.precision == "bf16" else torch.float16 if setting.precision == "fp16" else None

    def step() -> None:
        with torch.autocast(setting.device.split(":")[0], dtype=dtype or torch.float32, enabled=dtype is not None):
            torch.softmax(model(x, wl).float(), 1)

    from timing import time_paired  # benchmarks/timing.py: rounds, median, load on record

    with torch.inference_mode():
        step()  # warm-up (and compilation)
        _reset_peak(setting.device)
        t = time_paired({"model": step}, rounds=3, block_seconds=min_seconds / 3, warmup=0,
                        sync=lambda: _sync(setting.device))
    tiles_s = batch / t.median_seconds("model")
    return {"tiles_per_s": tiles_s, "mpx_per_s": tiles_s * tile * tile / 1e6, "rounds_s": t.seconds["model"],
            "load_before": t.load_before, "load_after": t.load_after, "loaded": t.loaded,
            "peak_gpu_gib": _peak_gib(setting.device)}


def bench_predictor(src: Path, out_dir: Path, tile: int, overlap: int, batch: int,
                    setting: Setting = Setting()) -> dict:
    """(b) end-to-end predict_raster on ``src`` with the same model and settings as (a)."""
    import rasterio

    from carl_geo.inference import PredictionCancelled, predict_raster

    bundle = seg_bundle(setting.config)
    cuda = setting.device.startswith("cuda")
    if setting.compile:  # compile once outside the timed run (later compiles of the model hit dynamo's cache)
        try:
            predict_raster(bundle, src, out_dir / "_bench_warmup.tif", output="classes", tile_size=tile,
                           overlap=overlap, batch_size=batch, device=setting.device, precision=setting.precision,
                           compile=True, progress=lambda done, total: done < batch)  # stops after one batch
        except PredictionCancelled:
            pass
    with rasterio.open(src) as ds:
        pixels = ds.width * ds.height
    # time spent inside the model's forward during the run: its share of the wall time is the
    # pipeline efficiency measured under the same machine load as the run itself
    busy = [0.0]
    forward = bundle.model.forward

    def timed_forward(*args, **kwargs):
        t = time.perf_counter()
        try:
            return forward(*args, **kwargs)
        finally:
            busy[0] += time.perf_counter() - t

    if not cuda and not setting.compile:  # on a GPU the forward returns before the work is done
        bundle.model.forward = timed_forward
    dst = out_dir / f"_bench_classes_o{overlap}.tif"
    _reset_peak(setting.device)
    try:
        res = predict_raster(bundle, src, dst, output="classes", tile_size=tile, overlap=overlap, batch_size=batch,
                             device=setting.device, precision=setting.precision, compile=setting.compile)
    finally:
        bundle.model.__dict__.pop("forward", None)
    dst.unlink(missing_ok=True)
    measured = busy[0] > 0
    return {"overlap": overlap, "seconds": res.seconds, "tiles": res.tiles, "tiles_per_s": res.tiles / res.seconds,
            "raster_mpx_per_s": pixels / res.seconds / 1e6, "pixels": pixels,
            "computed_px_per_raster_px": res.tiles * tile * tile / pixels,
            "model_seconds": busy[0] if measured else float("nan"),
            "model_share": busy[0] / res.seconds if measured else float("nan"),
            "overhead_ms_per_tile": 1000 * (res.seconds - busy[0]) / res.tiles if measured else float("nan"),
            "peak_gpu_gib": _peak_gib(setting.device)}


def _proc_status_mib(key: str) -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def _reset_peak_rss() -> bool:
    """Linux >= 4.0: writing 5 to /proc/self/clear_refs resets VmHWM (the peak RSS) to the current RSS."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def memory_child(src: str, model: str, tile: int, overlap: int, batch: int) -> None:
    """Run in a fresh process: print JSON with the RSS before predict_raster and its peak during it.

    ``ru_maxrss`` is the process's lifetime peak, which the imports (torch, torchgeo) may already
    set; so the peak of the prediction itself is read from VmHWM after resetting it (Linux), and
    ``ru_maxrss`` is reported too.
    """
    import torch  # noqa: F401  (imports count in the baseline)

    from carl_geo.inference import predict_raster

    net = tiny_bundle() if model == "tiny" else Pointwise.build()
    kw = {} if model == "tiny" else {"wavelengths": [0.443, 0.49, 0.56, 0.665, 0.705, 0.74, 0.783, 0.842, 0.865,
                                                     0.945, 1.375, 1.61, 2.19], "normalization": (1800.0, 700.0)}
    base = _proc_status_mib("VmRSS")
    reset = _reset_peak_rss()
    with tempfile.TemporaryDirectory() as tmp:
        res = predict_raster(net, src, Path(tmp) / "out.tif", output="classes", tile_size=tile, overlap=overlap,
                             batch_size=batch, device="cpu", **kw)
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    hwm = _proc_status_mib("VmHWM") if reset else None
    print(json.dumps({"baseline_rss_mib": base if base is not None else float("nan"),
                      "peak_rss_mib": hwm if hwm is not None else maxrss, "ru_maxrss_mib": maxrss,
                      "peak_source": "VmHWM reset before predict" if hwm is not None else "ru_maxrss",
                      "seconds": res.seconds, "tiles": res.tiles, "width": res.width, "height": res.height}))


def bench_memory(src: Path, model: str, tile: int, overlap: int, batch: int) -> dict:
    cmd = [sys.executable, __file__, "--_memory-child", str(src), "--mem-model", model, "--tile-size", str(tile),
           "--overlap", str(overlap), "--batch-size", str(batch)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def markdown(result: dict) -> str:
    a, cfg = result["model"], result["config"]
    lines = [
        f"# bench_predictor ({result['machine']})",
        "",
        f"{cfg['model_config']} CARL segmenter ({NUM_CLASSES} classes), {BANDS} bands, tile {cfg['tile_size']}, "
        f"batch {cfg['batch_size']}, device {result['device']}, precision {cfg['precision']}"
        f"{', torch.compile' if cfg['compile'] else ''}, CPU threads {result['torch_threads']}.",
        "",
        "Ratios b/a use the mean of the (a) runs just before and after each (b) run.",
        "",
        "`model share` = time inside the model's forward / wall time of the (b) run (same load as the run; "
        "eager CPU runs only, nan on CUDA or with torch.compile, where only the b/a ratios hold).",
        "",
        "| measurement | overlap | tiles/s | Mpx/s | tiles/s b/a | Mpx/s b/a | computed px per raster px | "
        "model share | other ms/tile | peak GPU GiB |",
        "|---|---|---|---|---|---|---|---|---|---|",
        f"| (a) bare model, in-memory (mean of {len(a['tiles_per_s_runs'])} runs: "
        f"{', '.join(f'{v:.3f}' for v in a['tiles_per_s_runs'])}) | - | {a['tiles_per_s']:.3f} | {a['mpx_per_s']:.3f} "
        f"| - | - | 1.00 | 1.00 | - | {a['peak_gpu_gib']:.2f} |",
    ]
    for b in result["predictor"]:
        lines.append(f"| (b) predict_raster {cfg['size']}² | {b['overlap']} | {b['tiles_per_s']:.3f} | "
                     f"{b['raster_mpx_per_s']:.3f} | **{b['ratio_tiles']:.3f}** | {b['ratio_mpx']:.3f} | "
                     f"{b['computed_px_per_raster_px']:.2f} | {b['model_share']:.3f} | "
                     f"{b['overhead_ms_per_tile']:.0f} | {b['peak_gpu_gib']:.2f} |")
    if result.get("memory"):
        lines += ["", f"Peak RSS (fresh process per size, model `{cfg['mem_model']}`, overlap {cfg['overlap']}):", "",
                  "| raster | tiles | seconds | RSS before predict (MiB) | peak RSS during predict (MiB) | "
                  "peak - before (MiB) | ru_maxrss (MiB) |",
                  "|---|---|---|---|---|---|---|"]
        for m in result["memory"]:
            lines.append(f"| {m['width']}² | {m['tiles']} | {m['seconds']:.1f} | {m['baseline_rss_mib']:.0f} | "
                         f"{m['peak_rss_mib']:.0f} | {m['peak_rss_mib'] - m['baseline_rss_mib']:.0f} | "
                         f"{m['ru_maxrss_mib']:.0f} |")
        lines += ["", "ru_maxrss is the lifetime peak and is set by the imports (torch, torchgeo) here; the peak "
                  "during predict is VmHWM reset just before the call."]
        lines += ["", f"peak RSS ratio largest / smallest: **{result['memory_ratio']:.3f}** (target <= 1.2)"]
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=4096, help="side of the raster for (b) (default 4096)")
    p.add_argument("--tile-size", type=int, default=256)
    p.add_argument("--overlap", type=int, default=64, help="overlap of the memory runs and the first (b) run")
    p.add_argument("--overlaps", default=None, help="comma-separated overlaps for (b) (default: --overlap)")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--config", choices=("tiny", "published"), default="tiny", help="CARL config of the segmenter")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N")
    p.add_argument("--precision", choices=("fp32", "bf16", "fp16"), default="fp32")
    p.add_argument("--compile", action="store_true", help="torch.compile the model in (a) and (b)")
    p.add_argument("--mem-sizes", default="2048,8192", help="raster sides for the memory runs ('' to skip)")
    p.add_argument("--mem-model", choices=("pointwise", "tiny"), default="pointwise")
    p.add_argument("--min-seconds", type=float, default=20.0, help="minimum duration of (a)")
    p.add_argument("--data", default=None, help="folder for the generated rasters (default: --out)")
    p.add_argument("--out", required=False, default="bench_results")
    p.add_argument("--_memory-child", dest="memory_child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.memory_child:
        memory_child(args.memory_child, args.mem_model, args.tile_size, args.overlap, args.batch_size)
        return

    import torch

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = Path(args.data) if args.data else out
    data.mkdir(parents=True, exist_ok=True)
    overlaps = [int(v) for v in (args.overlaps or str(args.overlap)).split(",")]
    setting = Setting(args.config, args.device, args.precision, args.compile)
    device = torch.cuda.get_device_name(torch.device(args.device)) if args.device.startswith("cuda") else "cpu"
    result: dict = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}",
        "device": device,
        "torch_threads": torch.get_num_threads(),
        "config": {"size": args.size, "tile_size": args.tile_size, "overlap": args.overlap, "overlaps": overlaps,
                   "batch_size": args.batch_size, "bands": BANDS, "mem_model": args.mem_model,
                   "model_config": args.config, "precision": args.precision, "compile": args.compile},
    }
    t = time.perf_counter()
    src = generate_raster(data / f"bench_{args.size}.tif", args.size)
    print(f"raster {src} ready ({time.perf_counter() - t:.0f} s)", flush=True)

    # (a) is measured before and after every (b) run; each ratio uses the mean of its bracket, so a
    # change of machine load during the benchmark shows up as a spread of (a), not as a bias
    runs = [bench_model(args.tile_size, args.batch_size, args.min_seconds, setting)]
    print(f"(a) bare model: {runs[0]['tiles_per_s']:.3f} tiles/s, {runs[0]['mpx_per_s']:.3f} Mpx/s", flush=True)
    result["predictor"] = []
    for ov in overlaps:
        b = bench_predictor(src, out, args.tile_size, ov, args.batch_size, setting)
        runs.append(bench_model(args.tile_size, args.batch_size, args.min_seconds, setting))
        print(f"(a) bare model: {runs[-1]['tiles_per_s']:.3f} tiles/s", flush=True)
        ref = (runs[-2]["tiles_per_s"] + runs[-1]["tiles_per_s"]) / 2
        b["model_tiles_per_s"] = ref
        b["ratio_tiles"] = b["tiles_per_s"] / ref
        b["ratio_mpx"] = b["raster_mpx_per_s"] / (ref * args.tile_size ** 2 / 1e6)
        result["predictor"].append(b)
        print(f"(b) predictor overlap {ov}: {b['tiles']} tiles in {b['seconds']:.1f} s = "
              f"{b['tiles_per_s']:.3f} tiles/s, {b['raster_mpx_per_s']:.3f} raster Mpx/s; "
              f"ratio b/a: tiles/s {b['ratio_tiles']:.3f}, "
              f"Mpx/s {b['ratio_mpx']:.3f} (overlap recompute factor {b['computed_px_per_raster_px']:.2f}); "
              f"model share of wall time {b['model_share']:.3f}", flush=True)
    tps = [r["tiles_per_s"] for r in runs]
    result["model"] = {"tiles_per_s": float(np.mean(tps)), "mpx_per_s": float(np.mean(tps)) * args.tile_size ** 2 / 1e6,
                       "tiles_per_s_runs": tps, "peak_gpu_gib": max(r["peak_gpu_gib"] for r in runs)}

    sizes = [int(v) for v in args.mem_sizes.split(",") if v.strip()]
    if sizes:
        result["memory"] = []
        for size in sizes:
            t = time.perf_counter()
            msrc = generate_raster(data / f"bench_{size}.tif", size)
            print(f"raster {msrc} ready ({time.perf_counter() - t:.0f} s)", flush=True)
            m = bench_memory(msrc, args.mem_model, args.tile_size, args.overlap, args.batch_size)
            result["memory"].append(m)
            print(f"(c) {size}^2: peak RSS {m['peak_rss_mib']:.0f} MiB (baseline {m['baseline_rss_mib']:.0f} MiB), "
                  f"{m['tiles']} tiles in {m['seconds']:.1f} s", flush=True)
        result["memory_ratio"] = result["memory"][-1]["peak_rss_mib"] / result["memory"][0]["peak_rss_mib"]
        print(f"peak RSS ratio {sizes[-1]}^2 / {sizes[0]}^2: {result['memory_ratio']:.3f} (target <= 1.2)")

    (out / "bench_predictor.json").write_text(json.dumps(result, indent=2))
    (out / "bench_predictor.md").write_text(markdown(result))
    print(markdown(result))
    chart(result, out / "bench_predictor.png")


def chart(result: dict, path: Path) -> None:
    """Bar chart of (a) model only vs (b) end to end: Mpixel/s (left; (a) counts the pixels it
    computes, (b) raster pixels, so overlap recompute shows) and tiles/s (right; pipeline
    efficiency). Skipped when matplotlib is missing."""
    try:
        import matplotlib
    except ImportError:
        print("matplotlib not installed: no PNG")
        return
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cfg, a, bs = result["config"], result["model"], result["predictor"]
    labels = ["(a) model only"] + [f"(b) predictor\noverlap {b['overlap']}" for b in bs]
    colors = ["tab:gray"] + ["tab:blue"] * len(bs)
    panels = [("Mpixel / s", [a["mpx_per_s"]] + [b["raster_mpx_per_s"] for b in bs], [b["ratio_mpx"] for b in bs]),
              ("tiles / s", [a["tiles_per_s"]] + [b["tiles_per_s"] for b in bs], [b["ratio_tiles"] for b in bs])]
    fig, axes = plt.subplots(1, 2, figsize=(3 + 2.4 * len(labels), 3.8))
    for ax, (ylabel, values, ratios) in zip(axes, panels):
        bars = ax.bar(range(len(values)), values, color=colors)
        for bar, r in zip(bars[1:], ratios):
            ax.annotate(f"{r:.2f} x (a)", (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                        ha="center", va="bottom", fontsize=8)
        ax.set_xticks(range(len(values)), labels, fontsize=8)
        ax.set_ylabel(ylabel)
        ax.margins(y=0.12)
    axes[0].set_title("(a) computed px, (b) raster px", fontsize=8)
    axes[1].set_title("model calls", fontsize=8)
    fig.suptitle(f"{cfg['model_config']} CARL, {cfg['size']}² x {BANDS} bands, tile {cfg['tile_size']}, "
                 f"batch {cfg['batch_size']}, {result['device']}, {cfg['precision']}"
                 f"{' + compile' if cfg['compile'] else ''}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    print(f"wrote {path}")

if __name__ == "__main__":
    main()
