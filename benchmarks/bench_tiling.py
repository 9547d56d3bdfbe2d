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
   rounds, median Mpx/s; then today's defaults with 1 torch thread and with ``precision="int8"``.
5. ``threads``: 1 vs 2 torch threads for one training step of the tiny segmenter (batch 8 chips
   64 x 64, 13 bands, AdamW) and one inference batch (4 tiles 256 x 256), alternating rounds.

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
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))

import carl_geo  # noqa: E402
from bench_models import class_agreement, generated_model, nc_model, uptime  # noqa: E402
from bench_predictor import generate_raster, seg_bundle  # noqa: E402
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


def tile_cost(sizes: list[int], rounds: int) -> list[dict[str, Any]]:
    model = seg_bundle("tiny").model
    wl = torch.tensor(carl_geo.get_sensor("sentinel2_l1c").wavelengths)
    xs = {s: torch.randn(max(1, 4 * 256 * 256 // (s * s)), 13, s, s) for s in sizes}
    times: dict[int, list[float]] = {s: [] for s in sizes}
    load = uptime()
    with torch.inference_mode():
        for s in sizes:
            model(xs[s], wl)
        for _ in range(rounds):
            for s in sizes:
                t = time.perf_counter()
                model(xs[s], wl)
                times[s].append((time.perf_counter() - t) / (xs[s].shape[0] * s * s) * 1e6)
    return [{"tile": s, "us_per_px": float(np.median(times[s])), "runs": times[s], "load_before": load,
             "load_after": uptime()} for s in sizes]


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


def predictor(src: Path, out: Path, rounds: int) -> list[dict[str, Any]]:
    bundle = seg_bundle("tiny")
    import rasterio

    with rasterio.open(src) as ds:
        pixels = ds.width * ds.height

    def run(tile: int, overlap: int, precision: str = "fp32") -> dict[str, Any]:
        load = uptime()
        r = predict_raster(bundle, src, out / "_pred.tif", tile_size=tile, overlap=overlap, batch_size=4,
                           device="cpu", precision=precision)
        r.path.unlink()
        row = {"tile_size": tile, "overlap": overlap, "precision": precision, "threads": torch.get_num_threads(),
               "seconds": r.seconds, "tiles": r.tiles, "mpx_per_s": pixels / r.seconds / 1e6,
               "computed_px_per_raster_px": r.tiles * TileGrid.build(r.height, r.width, tile, overlap).tile_h
               * TileGrid.build(r.height, r.width, tile, overlap).tile_w / pixels, "load_before": load,
               "load_after": uptime()}
        print(f"predictor {tile}/{overlap} {precision} {row['threads']} thr: {r.seconds:.1f} s, "
              f"{row['mpx_per_s']:.3f} Mpx/s, {r.tiles} tiles", flush=True)
        return row

    rows = []
    for _ in range(rounds):
        rows.append(run(*OLD))
        rows.append(run(*NEW))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        rows.append(run(*NEW))
    finally:
        torch.set_num_threads(threads)
    rows.append(run(*NEW, precision="int8"))
    return rows


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

    base = torch.get_num_threads()
    counts = sorted({1, base})
    times: dict[tuple[str, int], list[float]] = {}
    load = uptime()
    for fn in (train_step, infer):
        fn()
    for _ in range(rounds):
        for name, fn in (("training step (8 x 64^2)", train_step), ("inference (4 x 256^2)", infer)):
            for n in counts:
                torch.set_num_threads(n)
                t = time.perf_counter()
                fn()
                times.setdefault((name, n), []).append(time.perf_counter() - t)
    torch.set_num_threads(base)
    rows = []
    for (name, n), v in times.items():
        one = float(np.median(times[(name, 1)]))
        rows.append({"what": name, "threads": n, "median_s": float(np.median(v)), "runs": v,
                     "speedup_vs_1": one / float(np.median(v)), "load_before": load, "load_after": uptime()})
    return rows


def markdown(res: dict[str, Any]) -> str:
    m = res["meta"]
    lines = [f"# bench_tiling ({m['machine']}, torch {m['torch']}, {m['torch_threads']} torch threads)", "",
             f"Load average (1/5/15 min) at start {m['load_start']}, at end {m['load_end']}: a shared 2-core machine "
             "with other jobs running; A/B pairs are measured in alternating rounds in one process (medians).", "",
             f"Defaults now: tile {NEW[0]}, overlap {NEW[1]}, tile extents fitted to the raster (before: 256 / 64).",
             "", "## Computed pixels per raster pixel", "",
             "| raster side | tile / overlap | tile extent used | tiles | computed px per raster px |",
             "|---:|---|---:|---:|---:|"]
    for r in res["computed"]:
        lines.append(f"| {r['size']} | {r['tile_size']} / {r['overlap']} | {r['tile_extent']} | {r['tiles']} | "
                     f"{r['computed_px_per_raster_px']:.3f} |")
    if res.get("tile_cost"):
        lines += ["", "## Model cost per pixel vs tile side (tiny CARL segmenter, 13 bands)", "",
                  "| tile side | µs per pixel (median) |", "|---:|---:|"]
        lines += [f"| {r['tile']} | {r['us_per_px']:.2f} |" for r in res["tile_cost"]]
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
        lines += ["", f"Median Mpx/s: former defaults {s['old_mpx_per_s']:.3f}, today's {s['new_mpx_per_s']:.3f} "
                  f"(**x{s['speedup']:.2f}**); today's defaults with int8: x{s['int8_speedup_vs_old']:.2f} the former "
                  f"fp32 defaults; 2 vs 1 thread at today's defaults: x{s['threads_2_vs_1']:.2f}."]
    if res.get("threads"):
        lines += ["", "## Threads (tiny CARL)", "", "| what | threads | median s | speed-up vs 1 thread |",
                  "|---|---:|---:|---:|"]
        lines += [f"| {r['what']} | {r['threads']} | {r['median_s']:.3f} | {r['speedup_vs_1']:.2f} |"
                  for r in res["threads"]]
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
        res["tile_cost"] = tile_cost([int(s) for s in args.tile_sizes.split(",")], max(3, 2 * args.rounds + 1))
    if "class_maps" in sections:
        res["class_maps"] = class_maps(data, out)
    if "predictor" in sections:
        src = generate_raster(data / f"bench_{args.size}.tif", args.size)
        rows = res["predictor"] = predictor(src, out, args.rounds)
        med = lambda sel: float(np.median([r["mpx_per_s"] for r in rows if sel(r)]))  # noqa: E731
        fp32_new = lambda r: (r["tile_size"], r["overlap"]) == NEW and r["precision"] == "fp32"  # noqa: E731
        old = med(lambda r: (r["tile_size"], r["overlap"]) == OLD)
        new = med(lambda r: fp32_new(r) and r["threads"] == res["meta"]["torch_threads"])
        res["predictor_summary"] = {
            "old_mpx_per_s": old, "new_mpx_per_s": new, "speedup": new / old,
            "int8_speedup_vs_old": med(lambda r: r["precision"] == "int8") / old,
            "threads_2_vs_1": new / med(lambda r: fp32_new(r) and r["threads"] == 1)}
    if "threads" in sections:
        res["threads"] = threads_scaling(max(3, 2 * args.rounds + 1))
    res["meta"]["load_end"] = uptime()
    (out / "bench_tiling.json").write_text(json.dumps(res, indent=1))
    (out / "bench_tiling.md").write_text(markdown(res))
    chart(res, out / "bench_tiling.png")
    print(markdown(res))


if __name__ == "__main__":
    main()
