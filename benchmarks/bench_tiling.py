"""Predictor defaults on a CPU: tile size / overlap (recomputation, class maps, end-to-end speed) and
threads.

1. ``computed``: computed pixels per raster pixel (tiles x tile area / raster area) of tile/overlap
   settings for raster sides 1000, 4096 and 10980 (a Sentinel-2 tile), from the tile grid alone.
2. ``tile_cost``: model microseconds per pixel of the tiny CARL segmenter (13 bands) at tile sides
   ``--tile-sizes``, in alternating rounds (attention makes larger tiles dearer per pixel).
3. ``class_maps``: class agreement between today's defaults and the former ones (tile 256, overlap 64)
   for the NC demo model on the NC scene and a tiny CARL trained on a generated 13-band scene.
4. ``predictor``: ``predict_raster`` end to end on a generated 4096^2 13-band uint16 GeoTIFF (tiny
   CARL segmenter, random weights, batch 4, class map): former defaults vs today's, alternating
   rounds with today's defaults at 1 torch thread and with ``precision="int8"``, ratios per round.
5. ``threads``: 1 vs 2 torch threads for one training step of the tiny segmenter (batch 8 chips
   64 x 64, 13 bands, AdamW) and one inference batch (4 tiles 256 x 256), paired rounds.

Every timed section uses benchmarks/timing.py (warm-up, paired rounds, ratios per round with their range).

Load (``/proc/loadavg``) is recorded beside each section. Writes ``bench_tiling.json``, ``.md`` and
``.png`` to ``--out``.

Example::

    python benchmarks/bench_tiling.py --size 4096 --rounds 2 --out benchmarks/results
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).parent))

import carl_geo  # noqa: E402
from bench_models import class_agreement, generated_model, nc_model, uptime  # noqa: E402
from bench_predictor import generate_raster, seg_bundle  # noqa: E402
from timing import PairedTiming, time_paired  # noqa: E402  (benchmarks/timing.py)
from carl_geo.inference import predict_raster  # noqa: E402
from carl_geo.inference.tiling import DEFAULT_OVERLAP, DEFAULT_TILE_SIZE, TileGrid  # noqa: E402

OLD = (256, 64)
NEW = (DEFAULT_TILE_SIZE, DEFAULT_OVERLAP)
SETTINGS = [OLD, (256, 32), NEW, (384, 32), (512, 32)]


def computed() -> list[dict[str, Any]]:
    rows = []
    for size in (1000, 4096, 10980):
        for tile, overlap in SETTINGS:
            g = TileGrid.build(size, size, tile, overlap)
            rows.append({"size": size, "tile_size": tile, "overlap": overlap, "tile_extent": g.tile_w,
                         "tiles": g.n_tiles, "computed_px_per_raster_px": g.n_tiles * g.tile_h * g.tile_w / size**2})
    return rows


def with_threads(fn: Callable[[], None], n: int) -> Callable[[], None]:
    """``fn`` run with ``n`` torch threads (the previous count restored after each call)."""
    def run() -> None:
        base = torch.get_num_threads()
        torch.set_num_threads(n)
        try:
            fn()
        finally:
            torch.set_num_threads(base)
    return run


def tile_cost(sizes: list[int], rounds: int) -> tuple[list[dict[str, Any]], PairedTiming]:
    """µs per pixel of the tiny segmenter at each tile side: one batch of about 4 x 256^2 pixels per call, the
    sides in paired rounds (benchmarks/timing.py)."""
    model = seg_bundle("tiny").model
    wl = torch.tensor(carl_geo.get_sensor("sentinel2_l1c").wavelengths)
    xs = {s: torch.randn(max(1, 4 * 256 * 256 // (s * s)), 13, s, s) for s in sizes}

    def call(s: int) -> Callable[[], None]:
        def run() -> None:
            with torch.inference_mode():
                model(xs[s], wl)
        return run

    t = time_paired({str(s): call(s) for s in sizes}, rounds=rounds, block_seconds=1.0, warmup=1)
    px = {s: xs[s].shape[0] * s * s for s in sizes}
    return [{"tile": s, "us_per_px": 1e6 * t.median_seconds(str(s)) / px[s],
             "runs": [1e6 * v / px[s] for v in t.seconds[str(s)]],
             "vs_first": t.speedup(str(s), str(sizes[0])).to_dict(), "load_before": t.load_before,
             "load_after": t.load_after, "loaded": t.loaded} for s in sizes], t


#: A centred-context reference: every pixel's prediction comes mostly from a tile where it lies >= 56 px
#: from the tile edge (overlap 112 of 256).
WIDE = (256, 112)


def class_maps(data: Path, out: Path) -> list[dict[str, Any]]:
    """Agreement of the class maps at today's defaults and at the former ones, with each other and
    with a wide-overlap run (:data:`WIDE`); for the NC model also the demo's scores against strata.tif."""
    from bench_int8 import nc_scores

    rows = []
    nc, scene = nc_model(data)
    gen, gen_src = generated_model(data)
    for name, bundle, src in (("NC demo model, NC Landsat 7 scene", nc, scene.image),
                              ("tiny CARL trained on a generated 13-band 1024^2 scene", gen, gen_src)):
        paths = {}
        for tile, overlap in (OLD, NEW, WIDE):
            r = predict_raster(bundle, src, out / f"_cls_{tile}_{overlap}.tif", tile_size=tile, overlap=overlap,
                               device="cpu")
            paths[(tile, overlap)] = r.path
        row: dict[str, Any] = {"name": name, **class_agreement(paths[OLD], paths[NEW]),
                               "old_vs_wide": class_agreement(paths[OLD], paths[WIDE])["agreement"],
                               "new_vs_wide": class_agreement(paths[NEW], paths[WIDE])["agreement"]}
        if bundle is nc:
            row["reference_scores"] = {f"{t}/{o}": nc_scores(p, nc, scene) for (t, o), p in paths.items()}
        rows.append(row)
        for p in paths.values():
            p.unlink()
        print(f"class maps {name}: {rows[-1]}", flush=True)
    return rows


def predictor(src: Path, out: Path, rounds: int) -> tuple[list[dict[str, Any]], PairedTiming]:
    """``predict_raster`` end to end: the former defaults, today's, today's with 1 torch thread and with int8, in
    paired rounds (one whole raster per call; benchmarks/timing.py). Returns one row per run and the timing."""
    bundle = seg_bundle("tiny")
    import rasterio

    with rasterio.open(src) as ds:
        pixels = ds.width * ds.height
    rows: list[dict[str, Any]] = []

    def run(tile: int, overlap: int, precision: str = "fp32") -> Callable[[], None]:
        def once() -> None:
            load = uptime()
            r = predict_raster(bundle, src, out / "_pred.tif", tile_size=tile, overlap=overlap, batch_size=4,
                               device="cpu", precision=precision)
            r.path.unlink()
            g = TileGrid.build(r.height, r.width, tile, overlap)
            rows.append({"tile_size": tile, "overlap": overlap, "precision": precision, "threads": torch.get_num_threads(),
                         "seconds": r.seconds, "tiles": r.tiles, "mpx_per_s": pixels / r.seconds / 1e6,
                         "computed_px_per_raster_px": r.tiles * g.tile_h * g.tile_w / pixels, "load_before": load,
                         "load_after": uptime()})
            print(f"predictor {tile}/{overlap} {precision} {rows[-1]['threads']} thr: {r.seconds:.1f} s, "
                  f"{rows[-1]['mpx_per_s']:.3f} Mpx/s, {r.tiles} tiles", flush=True)
        return once

    t = time_paired({"former": run(*OLD), "today": run(*NEW), "today, 1 thread": with_threads(run(*NEW), 1),
                     "today, int8": run(*NEW, precision="int8")}, rounds=rounds, block_seconds=0.0, min_calls=1,
                    warmup=0)
    return rows, t


def threads_scaling(rounds: int) -> list[dict[str, Any]]:
    torch.manual_seed(0)
    seg = carl_geo.CARLSegmenter(carl_geo.CARL(carl_geo.tiny_config()), 8)
    opt = torch.optim.AdamW(seg.parameters(), 1e-4)
    wl = torch.tensor(carl_geo.get_sensor("sentinel2_l1c").wavelengths)
    x, y = torch.randn(8, 13, 64, 64), torch.randint(0, 8, (8, 64, 64))
    xi = torch.randn(4, 13, 256, 256)

    def train_step() -> None:
        seg.train()
        loss = torch.nn.functional.cross_entropy(seg(x, wl), y)
        opt.zero_grad()
        loss.backward()
        opt.step()

    def infer() -> None:
        seg.eval()
        with torch.inference_mode():
            seg(xi, wl)

    counts = sorted({1, torch.get_num_threads()})
    jobs = {"training step (8 x 64^2)": train_step, "inference (4 x 256^2)": infer}
    t = time_paired({f"{name}|{n}": with_threads(fn, n) for name, fn in jobs.items() for n in counts}, rounds=rounds,
                    block_seconds=1.0, warmup=1)
    rows = []
    for name in jobs:
        for n in counts:
            key = f"{name}|{n}"
            ratio = t.speedup(key, f"{name}|1")
            rows.append({"what": name, "threads": n, "median_s": t.median_seconds(key), "runs": t.seconds[key],
                         "speedup_vs_1": ratio.median, "speedup_range": [ratio.low, ratio.high],
                         "load_before": t.load_before, "load_after": t.load_after, "loaded": t.loaded})
    return rows


def markdown(res: dict[str, Any]) -> str:
    m = res["meta"]
    lines = [f"# bench_tiling ({m['machine']}, torch {m['torch']}, {m['torch_threads']} torch threads)", "",
             f"Load average (1/5/15 min) at start {m.get('load_start_merge', m['load_start'])}, at end "
             f"{m['load_end']}" + (" (sections not rerun this time keep their earlier results)"
                                   if "load_start_merge" in m else "") + ". Every timed section "
             "uses benchmarks/timing.py: warm-up, paired rounds in rotating order, speed-ups per round (median and "
             "range).", "",
             f"Defaults now: tile {NEW[0]}, overlap {NEW[1]}, tile extents fitted to the raster (before: 256 / 64).",
             "", "## Computed pixels per raster pixel", "",
             "| raster side | tile / overlap | tile extent used | tiles | computed px per raster px |",
             "|---:|---|---:|---:|---:|"]
    for r in res["computed"]:
        lines.append(f"| {r['size']} | {r['tile_size']} / {r['overlap']} | {r['tile_extent']} | {r['tiles']} | "
                     f"{r['computed_px_per_raster_px']:.3f} |")
    if res.get("tile_cost"):
        lines += ["", "## Model cost per pixel vs tile side (tiny CARL segmenter, 13 bands)", "",
                  "| tile side | µs per pixel (median) | rounds |", "|---:|---:|---|"]
        lines += [f"| {r['tile']} | {r['us_per_px']:.2f} | {', '.join(f'{v:.2f}' for v in r['runs'])} |"
                  for r in res["tile_cost"]]
    if res.get("class_maps"):
        lines += ["", f"## Class maps: today's defaults ({NEW[0]} / {NEW[1]}) vs the former 256 / 64", "",
                  f"`wide` = tile {WIDE[0]} / overlap {WIDE[1]} (every pixel mostly predicted far from a tile edge).", "",
                  "| model and scene | pixels | new vs former | former vs wide | new vs wide |", "|---|---:|---:|---:|---:|"]
        lines += [f"| {r['name']} | {r['pixels']} | {100 * r['agreement']:.2f} % | "
                  f"{100 * r.get('old_vs_wide', float('nan')):.2f} % | {100 * r.get('new_vs_wide', float('nan')):.2f} % |"
                  for r in res["class_maps"]]
        for r in res["class_maps"]:
            if "reference_scores" in r:
                lines += ["", f"{r['name']} against strata.tif (demo's evaluation pixels): " + "; ".join(
                    f"{k}: OA {v['overall_accuracy']:.4f}, mIoU {v['mean_iou']:.4f}" for k, v in r["reference_scores"].items())]
    if res.get("predictor"):
        p = res["predictor"]
        lines += ["", f"## predict_raster end to end, {res['config']['size']}^2 x 13 bands uint16, tiny CARL, batch 4",
                  "", "| tile / overlap | precision | threads | tiles | computed px per raster px | seconds | Mpx/s | "
                  "load before |", "|---|---|---:|---:|---:|---:|---:|---|"]
        for r in p:
            lines.append(f"| {r['tile_size']} / {r['overlap']} | {r['precision']} | {r['threads']} | {r['tiles']} | "
                         f"{r['computed_px_per_raster_px']:.3f} | {r['seconds']:.1f} | {r['mpx_per_s']:.3f} | "
                         f"{r['load_before']} |")
        s = res["predictor_summary"]
        ratio = lambda v: f"x{v['median']:.2f} ({v['min']:.2f}-{v['max']:.2f}, {v['rounds']} rounds)"  # noqa: E731
        lines += ["", f"Median Mpx/s: former defaults {s['old_mpx_per_s']:.3f}, today's {s['new_mpx_per_s']:.3f}; "
                  f"paired per round (benchmarks/timing.py): today's vs the former **{ratio(s['speedup'])}**; today's "
                  f"with int8 vs the former fp32 {ratio(s['int8_speedup_vs_old'])}, vs today's fp32 "
                  f"{ratio(s['int8_speedup_vs_new'])}; 2 vs 1 thread at today's defaults {ratio(s['threads_2_vs_1'])}; "
                  f"{s['load']}."]
    if res.get("threads"):
        lines += ["", "## Threads (tiny CARL)", "", "| what | threads | median s | speed-up vs 1 thread (range) |",
                  "|---|---:|---:|---:|"]
        lines += [f"| {r['what']} | {r['threads']} | {r['median_s']:.3f} | {r['speedup_vs_1']:.2f} "
                  f"({r.get('speedup_range', [r['speedup_vs_1']] * 2)[0]:.2f}-"
                  f"{r.get('speedup_range', [r['speedup_vs_1']] * 2)[1]:.2f}) |" for r in res["threads"]]
    return "\n".join(lines) + "\n"


def chart(res: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    big = [r for r in res["computed"] if r["size"] == 4096]
    axes[0].bar(range(len(big)), [r["computed_px_per_raster_px"] for r in big],
                color=["tab:green" if (r["tile_size"], r["overlap"]) == NEW else "tab:gray" for r in big])
    axes[0].axhline(1.3, color="tab:red", lw=0.8, ls="--")
    axes[0].set_xticks(range(len(big)), [f"{r['tile_size']}/{r['overlap']}" for r in big], fontsize=8)
    axes[0].set_ylabel("computed px per raster px (4096²)")
    if res.get("predictor"):
        p = res["predictor"]
        labels = [f"{r['tile_size']}/{r['overlap']}\n{r['precision']} {r['threads']}t" for r in p]
        axes[1].bar(range(len(p)), [r["mpx_per_s"] for r in p],
                    color=["tab:gray" if (r["tile_size"], r["overlap"]) == OLD else "tab:green" for r in p])
        axes[1].set_xticks(range(len(p)), labels, fontsize=7)
        axes[1].set_ylabel("raster Mpx/s (4096², tiny CARL)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=4096)
    p.add_argument("--rounds", type=int, default=2, help="alternating rounds of the predictor A/B")
    p.add_argument("--tile-sizes", default="256,384,512")
    p.add_argument("--sections", default="computed,tile_cost,class_maps,predictor,threads")
    p.add_argument("--data", default=None)
    p.add_argument("--merge", action="store_true", help="update the sections run in an existing bench_tiling.json")
    p.add_argument("--out", default="benchmarks/results")
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = Path(args.data) if args.data else out
    data.mkdir(parents=True, exist_ok=True)
    sections = args.sections.split(",")
    res: dict[str, Any] = {"meta": {"machine": f"{platform.machine()}, {len(os.sched_getaffinity(0))} cores",
                                    "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
                                    "load_start": uptime()}, "config": {"size": args.size}}
    if args.merge and (out / "bench_tiling.json").exists():
        old_res = json.loads((out / "bench_tiling.json").read_text())
        res = {**old_res, "meta": {**old_res["meta"], "load_start_merge": res["meta"]["load_start"]}}
    res["computed"] = computed()
    if "tile_cost" in sections:
        res["tile_cost"], _ = tile_cost([int(s) for s in args.tile_sizes.split(",")], max(3, args.rounds + 1))
    if "class_maps" in sections:
        res["class_maps"] = class_maps(data, out)
    if "predictor" in sections:
        src = generate_raster(data / f"bench_{args.size}.tif", args.size)
        res["predictor"], t = predictor(src, out, args.rounds)
        pixels = args.size ** 2
        speed = lambda name: pixels / t.median_seconds(name) / 1e6  # noqa: E731
        res["predictor_summary"] = {
            "old_mpx_per_s": speed("former"), "new_mpx_per_s": speed("today"),
            "speedup": t.speedup("today", "former").to_dict(),
            "int8_speedup_vs_old": t.speedup("today, int8", "former").to_dict(),
            "int8_speedup_vs_new": t.speedup("today, int8", "today").to_dict(),
            "threads_2_vs_1": t.speedup("today", "today, 1 thread").to_dict(), "load": t.load_text(),
            "loaded": t.loaded}
    if "threads" in sections:
        res["threads"] = threads_scaling(max(3, args.rounds + 1))
    res["meta"]["load_end"] = uptime()
    (out / "bench_tiling.json").write_text(json.dumps(res, indent=1))
    (out / "bench_tiling.md").write_text(markdown(res))
    chart(res, out / "bench_tiling.png")
    print(markdown(res))


if __name__ == "__main__":
    main()
