"""Polygon training on real and generated scenes: what `carl-geo train` keeps vs a per-pixel random forest on the
bands (``rf``) and on the bands + window context (``rf_context``, the strong cheap baseline).

Scenes (all reachable offline):

* ``nc``: GRASS GIS North Carolina Landsat 7 ETM+ (6 bands, 387 x 358 px, 28.5 m); training polygons
  ``landsat96_polygons``; scored against the dense reference ``strata.tif`` outside the polygons.
* ``s2``: Sentinel-2A L1C Havelland (13 bands at 10/20/60 m through a VRT, 1536 x 768 px at 10 m);
  OSM land-use training polygons; scored on the spatially separate test polygons. Cross-sensor rows:
  the SAME CARL model predicts the scene from 4 bands (B02 B03 B04 B08) and from 6 Landsat-like bands
  (B02 B03 B04 B8A B11 B12); the forest is retrained on each subset (it cannot reuse its model).
* ``hsi``: a generated 200-band, 145 x 145 px scene with 16 crop classes
  (:func:`carl_geo.sample_data.synthetic.hyperspectral_fields`), training polygons and test pixels in
  disjoint blocks.

Methods (the JSON's ``method``): ``carl`` = the model ``train_from_polygons`` keeps by default (its ``kept``
field names the candidate); ``carl_alone``, ``carl_forest``, ``carl_mlp`` = the other candidates of the same run
(heads fitted on the training polygons only, not refitted); ``rf`` = a forest of 200 trees on the bands of every
training pixel; ``rf_context`` = the same forest on the bands and the window means of their principal components
(:class:`carl_geo.models.context_features.ContextFeatures`; at most 100,000 training pixels).

``BENCH_FUSIONS=1`` also scores late fusions of each CARL run's candidates on the reference (:data:`FUSIONS`, the
``fusion_rows`` of its result; ``benchmarks/results/polygon_experiments/2026-12-06``). ``BENCH_KEEP_MODELS=DIR`` keeps
the trained CARL models there; ``BENCH_DEVICE=cuda`` trains and predicts
CARL on a GPU (default ``cpu``, the 2-core reference of the README table). Each (scene, method, seed) runs in its own process, so peak RSS is that run's own (training and then its maps; a ``carl`` row's ``train_peak_rss_mib`` is the peak when training ended). Times are wall
seconds and CPU seconds of that process (the CPU figure is steadier on a shared machine).

    python benchmarks/bench_polygons.py                       # all scenes, CARL + forest, seed 0
    python benchmarks/bench_polygons.py --scenes hsi --methods carl --set max_steps=200 --tag try1

Writes ``bench_polygons.json``, ``bench_polygons.md`` and ``bench_polygons.png`` under ``--out``
(``--tag`` adds a suffix and skips the PNG's default name).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from timing import cpu_model, load_average, software_versions  # noqa: E402  (benchmarks/timing.py: one load reading for every benchmark)
S2_SUBSETS = {"4 bands (B02 B03 B04 B08)": ["B02", "B03", "B04", "B08"],
              "6 bands (B02 B03 B04 B8A B11 B12)": ["B02", "B03", "B04", "B8A", "B11", "B12"]}
RF_TREES = 200
#: Training pixels of the forest + context at most (all 250,000 of Sentinel-2 took 608 s).
RF_CONTEXT_PIXELS = 100_000
#: JSON method names of the other candidates of a `carl-geo train` run.
CANDIDATE_METHODS = {"carl": "carl_alone"}
METHOD_LABELS = {"carl": "CARL default (kept)", "carl_alone": "CARL model alone", "carl_forest": "CARL + forest",
                 "carl_mlp": "CARL + MLP", "rf": "random forest", "rf_context": "forest + context"}


# ---- scenes: image, training polygons, reference ---------------------------------------------

def scene_spec(name: str, work: Path) -> dict[str, Any]:
    """image, polygons, label_field, ref (H, W) int64 (-1 = not scored), ref_names, band_names.

    ``nc@ROW:COL:SIZE`` / ``s2@ROW:COL:SIZE`` is a small scene cut from the NC / Sentinel-2 scene: its SIZE x SIZE
    px window at (ROW, COL) written as a GeoTIFF of its own (band names, wavelengths and scales kept), with the
    polygons clipped to the window (:func:`carl_geo.sample_data.write_crop`), scored like the whole scene.
    """
    import rasterio

    from carl_geo.datasets.vector_labels import IGNORE_INDEX, rasterize_labels, read_label_vector
    from carl_geo.sample_data import write_crop

    base, _, window = name.partition("@")

    def cropped(sc: Any) -> Any:
        if not window:
            return sc
        row, col, size = (int(v) for v in window.split(":"))
        return write_crop(sc, work / name.replace("@", "_").replace(":", "_"), row, col, size, clip=True)

    if base == "nc":
        from carl_geo.demo import _read_scene
        from carl_geo.sample_data import nc_landsat7

        sc = cropped(nc_landsat7())
        ref = _read_scene(sc)["reference"]  # strata outside the training polygons, -1 elsewhere
        return {"image": sc.image, "polygons": sc.polygons, "label_field": sc.label_field, "ref": ref,
                "ref_names": list(sc.class_names), "band_names": list(sc.band_names)}
    if base == "s2":
        from carl_geo.sample_data import sentinel2_havelland

        sc = cropped(sentinel2_havelland())
        with rasterio.open(sc.image) as src:
            shape, transform, crs = src.shape, src.transform, src.crs
        lab = rasterize_labels(read_label_vector(sc.test_polygons, sc.label_field), sc.label_field, shape=shape,
                               transform=transform, crs=crs, class_names=list(sc.class_names))
        return {"image": sc.image, "polygons": sc.polygons, "label_field": sc.label_field,
                "ref": np.where(lab.mask == IGNORE_INDEX, -1, lab.mask), "ref_names": list(sc.class_names),
                "band_names": list(sc.band_names)}
    if base == "hsi" and not window:
        from carl_geo.sample_data.synthetic import hyperspectral_fields

        sc = hyperspectral_fields(work / "hsi", seed=0)
        with rasterio.open(sc.test_reference) as src:
            ref = src.read(1).astype(np.int64) - 1
        return {"image": sc.image, "polygons": sc.polygons, "label_field": sc.label_field, "ref": ref,
                "ref_names": list(sc.class_names), "band_names": None}
    raise SystemExit(f"unknown scene {name!r} (nc, s2, hsi, or a crop nc@ROW:COL:SIZE / s2@ROW:COL:SIZE)")


def score(pred: np.ndarray, pred_names: list[str], ref: np.ndarray, ref_names: list[str],
          trained: list[str]) -> dict[str, Any]:
    """OA over scored pixels and mIoU over the reference classes that have training polygons."""
    from carl_geo.polygon_training.metrics import confusion_matrix, overall_accuracy, per_class_iou

    to_ref = np.array([ref_names.index(n) if n in ref_names else -1 for n in pred_names] + [-1])
    p = to_ref[np.where(pred >= 0, pred, len(pred_names))]
    ok = ref >= 0
    k = len(ref_names)
    cm = confusion_matrix(ref[ok], p[ok], k)
    iou = per_class_iou(cm)
    idx = [ref_names.index(n) for n in trained if n in ref_names]
    return {"oa": round(overall_accuracy(cm), 4), "miou": round(float(np.nanmean(iou[idx])), 4),
            "per_class_iou": {ref_names[i]: (None if np.isnan(iou[i]) else round(float(iou[i]), 4)) for i in idx},
            "n_scored": int(ok.sum())}


# ---- one run (in a child process) ---------------------------------------------------------------

def run_one(scene: str, method: str, seed: int, settings: dict[str, Any], work: Path) -> dict[str, Any]:
    import rasterio
    import torch

    spec = scene_spec(scene, work)
    t_wall, t_cpu = time.perf_counter(), time.process_time()
    rows: list[dict[str, Any]] = []
    if method == "carl":
        from carl_geo.inference import predict_raster
        from carl_geo.inference.writer import read_class_map
        from carl_geo.polygon_training import train_from_polygons

        torch.set_num_threads(int(os.environ.get("BENCH_THREADS", 0)) or os.cpu_count() or 1)
        device = os.environ.get("BENCH_DEVICE", "cpu")
        settings = dict(settings)
        tiling = {}
        if "predict_tile" in settings:
            tile = int(settings.pop("predict_tile"))
            tiling = {"tile_size": tile, "overlap": tile // 4}
        log: list[str] = []
        keep = os.environ.get("BENCH_KEEP_MODELS")
        model_path = Path(keep) / f"{scene}_seed{seed}.pt" if keep else work / "model.pt"
        res = train_from_polygons(spec["image"], spec["polygons"], spec["label_field"], model_path,
                                  device=device, seed=seed, log=log.append, **settings)
        train_wall, train_cpu = time.perf_counter() - t_wall, time.process_time() - t_cpu
        train_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # before the maps this process makes
        names = list(res.bundle.class_names)
        variants = [("all bands", None)]
        if scene == "s2":
            variants += list(S2_SUBSETS.items())
        def predict_rows(bundle: Any, variants: list[tuple[str, Any]]) -> list[dict[str, Any]]:
            out = []
            for label, bands in variants:
                t = time.perf_counter()
                predict_raster(bundle, spec["image"], work / "map.tif", device=device, bands=bands, overwrite=True,
                               **tiling)
                pred, _ = read_class_map(work / "map.tif")
                out.append({"bands": label, **score(pred, names, spec["ref"], spec["ref_names"], names),
                            "predict_s": round(time.perf_counter() - t, 1)})
            return out

        rows = predict_rows(res.bundle, variants)
        fusion_rows = fusions(res.candidates, spec, names, work, device, tiling) if os.environ.get(
            "BENCH_FUSIONS") else None
        candidate_rows = {CANDIDATE_METHODS.get(n, n): predict_rows(b, variants[:1]) for n, b in res.candidates.items()
                          if n not in ("rf", "rf_context")}
        extra = {"steps": res.report.get("steps"), "best_step": res.report.get("best_step"),
                 "averaged_steps": res.report.get("averaged_steps"), "kept": res.report.get("kept"),
                 "kept_reason": res.report.get("kept_reason"), "candidates": res.report.get("candidates"),
                 "stop_reason": res.report.get("stop_reason"), "recipe": res.bundle.meta["training"]["recipe"],
                 "val_miou": round(res.report["mean_iou"], 4), "notices": res.report.get("notices"),
                 "log_tail": log[-3:], "candidate_rows": candidate_rows, "train_peak_rss_mib": round(train_rss)}
        if fusion_rows is not None:
            extra["fusion_rows"] = fusion_rows
    elif method in ("rf", "rf_context"):
        import torch
        from sklearn.ensemble import RandomForestClassifier

        from carl_geo.datasets.vector_labels import rasterize_labels, read_label_vector
        from carl_geo.models.context_features import ContextFeatures

        with rasterio.open(spec["image"]) as src:
            data = src.read(masked=True)
            shape, transform, crs = src.shape, src.transform, src.crs
        img = np.asarray(data.filled(0), dtype=np.float32)
        valid = ~np.ma.getmaskarray(data).any(0)
        lab = rasterize_labels(read_label_vector(spec["polygons"], spec["label_field"]), spec["label_field"],
                               shape=shape, transform=transform, crs=crs)
        names = list(lab.class_names)
        train = valid & (lab.mask >= 0)
        rng = np.random.default_rng(seed)
        variants = [("all bands", None)]
        if scene == "s2":
            variants += list(S2_SUBSETS.items())
        train_wall = train_cpu = 0.0
        for label, bands in variants:
            sel = list(range(img.shape[0])) if bands is None else [spec["band_names"].index(b) for b in bands]
            t, c = time.perf_counter(), time.process_time()
            x = img[sel]
            idx = np.flatnonzero(train.ravel())
            if method == "rf_context":  # bands + window means of principal components, fitted on the scene
                ctx = ContextFeatures(len(sel))
                vals = x.reshape(len(sel), -1)[:, valid.ravel()]
                ctx.fit(torch.from_numpy(vals[:, rng.choice(vals.shape[1], min(vals.shape[1], 200_000),
                                                            replace=False)].T.copy()))
                with torch.no_grad():
                    x = ctx(torch.from_numpy(x)[None])[0].numpy()
                if len(idx) > RF_CONTEXT_PIXELS:
                    idx = np.sort(rng.choice(idx, RF_CONTEXT_PIXELS, replace=False))
            flat = x.reshape(x.shape[0], -1)
            rf = RandomForestClassifier(RF_TREES, n_jobs=os.cpu_count() or 1, random_state=seed)
            rf.fit(flat[:, idx].T, lab.mask.ravel()[idx])
            pred = np.full(shape, -1, dtype=np.int64)
            pred[valid] = rf.predict(flat[:, valid.ravel()].T)
            if bands is None:
                train_wall, train_cpu = time.perf_counter() - t, time.process_time() - c
            rows.append({"bands": label, **score(pred, names, spec["ref"], spec["ref_names"], names)})
        extra = {}
    else:
        raise SystemExit(f"unknown method {method!r}")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"scene": scene, "method": method, "seed": seed, "settings": settings, "rows": rows,
            "train_wall_s": round(train_wall, 1), "train_cpu_s": round(train_cpu, 1),
            "peak_rss_mib": round(rss), **extra}


#: ``BENCH_FUSIONS=1``: late fusions of a CARL run's candidates (heads fitted on the training polygons only), scored on
#: the reference: name -> the candidates whose class probabilities are averaged.
FUSIONS = {"e3": ("carl", "carl_forest", "carl_mlp"), "e4_rf": ("carl", "carl_forest", "carl_mlp", "rf"),
           "e4_ctx": ("carl", "carl_forest", "carl_mlp", "rf_context"),
           "e5": ("carl", "carl_forest", "carl_mlp", "rf", "rf_context"), "carl_rf": ("carl", "rf"),
           "rf_100": ("rf",), "rf_context_100": ("rf_context",)}


def fusions(candidates: dict[str, Any], spec: dict[str, Any], names: list[str], work: Path, device: str,
            tiling: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each :data:`FUSIONS` entry's score on the reference (the mean of its candidates' probability maps)."""
    import rasterio

    from carl_geo.inference import predict_raster

    probs = {}
    for name in sorted({n for members in FUSIONS.values() for n in members}):
        predict_raster(candidates[name], spec["image"], work / "prob.tif", device=device, output="probabilities",
                       overwrite=True, **tiling)
        with rasterio.open(work / "prob.tif") as src:
            probs[name] = src.read().astype(np.float32)
    out = {}
    for fusion, members in FUSIONS.items():
        p = np.mean([probs[m] for m in members], axis=0)
        pred = np.where(np.isnan(p).any(0), -1, np.nan_to_num(p).argmax(0))
        out[fusion] = score(pred, names, spec["ref"], spec["ref_names"], names)
    return out


# ---- report --------------------------------------------------------------------------------------

def expand(res: dict[str, Any]) -> list[dict[str, Any]]:
    """One CARL run -> its ``carl`` result (the kept model) and one result per other candidate."""
    cands = res.pop("candidate_rows", None) or {}
    out = [res]
    for method, rows in cands.items():
        drop = ("rows", "candidates", "kept_reason", "log_tail", "fusion_rows")
        out.append({k: v for k, v in res.items() if k not in drop}
                   | {"method": method, "rows": rows})
    return out


def label(method: str) -> str:
    return METHOD_LABELS.get(method, method)


def markdown(results: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    lines = [f"# Polygon training benchmark ({meta['date']}, {meta['machine']})", "",
             (f"CPU: {meta['cpu']}; " if meta.get("cpu") else "")
             + (", ".join(f"{k} {v}" for k, v in meta["versions"].items()) + ". " if meta.get("versions") else "")
             + f"Load average at start / end: {meta['load_start']} / {meta['load_end']}"
             + (" (above the core count: timings are slowed by other work)" if meta.get("loaded") else "") + ". "
             "CARL: `train_from_polygons` defaults (tiny config, from scratch)"
             + (f" with {meta['settings']}" if meta["settings"] else "")
             + f"; forests: {RF_TREES} trees per pixel (rf_context: at most {RF_CONTEXT_PIXELS:,} training pixels). "
             "Candidate rows (CARL model alone, CARL + forest, CARL + MLP) are the same run's other candidates, their "
             "heads fitted on the training polygons only; the kept model's head is refitted on every polygon."
             + "".join(f" Rerun {m.get('date')} (load {m.get('load_start')} / {m.get('load_end')}): {m['what']}."
                       for m in meta.get("reruns", [])), "",
             "| scene | method | kept | bands at prediction | OA | mIoU | training wall s | training CPU s | peak RSS MiB | "
             "steps | predict s |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        for row in r["rows"]:
            kept = r.get("kept", "") if r["method"] == "carl" else ""
            lines.append(f"| {r['scene']} | {label(r['method'])} (seed {r['seed']}) | {kept} | {row['bands']} | "
                         f"{row['oa']:.3f} | {row['miou']:.3f} | {r['train_wall_s']:.0f} | {r['train_cpu_s']:.0f} | "
                         f"{r['peak_rss_mib']} | {r.get('steps', '') if row['bands'] == 'all bands' else ''} | "
                         f"{row.get('predict_s', '')} |")
    means = seed_means(results)
    lines += ["", "Over seeds (mean, min-max of mIoU):", "",
              "| scene | method | bands at prediction | seeds | OA mean | mIoU mean | mIoU min-max |",
              "|---|---|---|---|---|---|---|"]
    for (scene, method, bands), rows in means.items():
        m = [x["miou"] for x in rows]
        lines.append(f"| {scene} | {label(method)} | {bands} | {len(rows)} | {np.mean([x['oa'] for x in rows]):.3f} | "
                     f"{np.mean(m):.3f} | {min(m):.3f}-{max(m):.3f} |")
    kept = [(r["scene"], r["seed"], r.get("kept")) for r in results if r["method"] == "carl"]
    if kept:
        lines += ["", "Kept candidate per run: " + "; ".join(f"{sc} seed {sd}: {k}" for sc, sd, k in kept)]
    return "\n".join(lines) + "\n"


def seed_means(results: list[dict[str, Any]]) -> dict[tuple[str, str, str], list[dict[str, Any]]]:
    """Rows grouped by (scene, method, bands at prediction), one entry per seed, in the results' order."""
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for r in results:
        for row in r["rows"]:
            groups.setdefault((r["scene"], r["method"], row["bands"]), []).append(row)
    return groups


#: Bars of the figure: method, colour.
FIGURE_METHODS = (("carl", "#2b6cb0"), ("carl_alone", "#90cdf4"), ("rf_context", "#975a16"), ("rf", "#ecc94b"))


def figure(results: list[dict[str, Any]], path: Path) -> None:
    groups: dict[str, dict[str, float]] = {}  # mean mIoU over seeds
    for (scene, method, bands), rows in seed_means(results).items():
        groups.setdefault(f"{scene}\n{bands.split(' (')[0]}", {})[method] = float(np.mean([x["miou"] for x in rows]))
    methods = [(m, c) for m, c in FIGURE_METHODS if any(m in g for g in groups.values())]
    bar_figure(list(groups), {label(m): ([groups[k].get(m, np.nan) for k in groups], c) for m, c in methods}, path,
               "mean IoU (held-out; mean over seeds)", "Polygon training: what carl-geo train keeps vs forests",
               group_width=1.9, ncol=2)


def bar_figure(keys: list[str], series: dict[str, tuple[list[float], str | None]], path: Path, ylabel: str,
               title: str, *, group_width: float = 1.9, ncol: int = 2, values: bool = True) -> None:
    """Grouped bars: one group per key, one bar per series (label -> (value per key, colour or None)); NaN = no bar."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    width = 0.8 / max(1, len(series))
    x = np.arange(len(keys))
    fig, ax = plt.subplots(figsize=(group_width * len(keys) + 2, 3.8))
    for j, (name, (vals, color)) in enumerate(series.items()):
        off = (j - (len(series) - 1) / 2) * width
        ax.bar(x + off, vals, width, label=name, color=color or plt.get_cmap("tab10")(j))
        for xi, v in zip(x, vals):
            if values and np.isfinite(v):
                ax.text(xi + off, v + 0.01, f"{v:.2f}", ha="center", fontsize=6)
    ax.set_xticks(x, keys, fontsize=8 if group_width > 1.5 else 7)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, frameon=False, ncol=ncol)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _parse_setting(text: str) -> tuple[str, Any]:
    key, _, value = text.partition("=")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scenes", default="nc,s2,hsi")
    p.add_argument("--methods", default="carl,rf,rf_context")
    p.add_argument("--seeds", default="0")
    p.add_argument("--set", action="append", default=[], metavar="KEY=JSON",
                   help="TrainingRecipe override for CARL, e.g. --set max_steps=200 --set 'band_subset=[3,16]'")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    p.add_argument("--tag", default="", help="suffix of the output files")
    p.add_argument("--one", help=argparse.SUPPRESS)
    args = p.parse_args()
    settings = dict(_parse_setting(s) for s in args.set)
    if args.one:  # child process
        job = json.loads(args.one)
        with tempfile.TemporaryDirectory() as tmp:
            res = run_one(job["scene"], job["method"], job["seed"], job["settings"], Path(tmp))
        print("RESULT " + json.dumps(res))
        return
    meta = {"date": time.strftime("%Y-%m-%d"), "machine": f"{platform.processor() or platform.machine()}, "
            f"{os.cpu_count()} cores", "cpu": cpu_model(), "versions": software_versions(),
            "load_start": load_average(), "settings": settings}
    results = []
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = "bench_polygons" + (f"_{args.tag}" if args.tag else "")
    partial = out / f"{stem}.partial.json"  # what is measured so far, so an interrupted run keeps it
    for scene in args.scenes.split(","):
        for method in args.methods.split(","):
            for seed in (int(s) for s in args.seeds.split(",")):
                job = {"scene": scene, "method": method, "seed": seed, "settings": settings if method == "carl" else {}}
                t = time.perf_counter()
                proc = subprocess.run([sys.executable, __file__, "--one", json.dumps(job)], capture_output=True,
                                      text=True)
                line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
                if proc.returncode or not line:
                    print(proc.stdout[-2000:], proc.stderr[-4000:], file=sys.stderr)
                    raise SystemExit(f"{scene}/{method}/{seed} failed")
                res = json.loads(line[0][7:])
                for entry in expand(res):
                    results.append(entry)
                    print(f"{scene:4s} {entry['method']:11s} seed {seed}: " + "; ".join(
                        f"{r['bands']}: OA {r['oa']:.3f} mIoU {r['miou']:.3f}" for r in entry["rows"])
                        + (f"  kept {entry.get('kept')}" if entry["method"] == "carl" else "")
                        + f"  (train {entry['train_wall_s']:.0f} s wall / {entry['train_cpu_s']:.0f} s CPU, "
                          f"RSS {entry['peak_rss_mib']} MiB (training {entry.get('train_peak_rss_mib', '-')}), steps {entry.get('steps')}, {time.perf_counter() - t:.0f} s)",
                        flush=True)
                partial.write_text(json.dumps({"meta": meta, "results": results}, indent=1))
    meta["load_end"] = load_average()
    meta["loaded"] = max((v for v in (meta["load_start"], meta["load_end"]) if v is not None), default=0) > (os.cpu_count() or 1)
    (out / f"{stem}.json").write_text(json.dumps({"meta": meta, "results": results}, indent=1))
    (out / f"{stem}.md").write_text(markdown(results, meta))
    figure(results, out / f"{stem}.png")
    partial.unlink(missing_ok=True)
    print(f"wrote {out / stem}.{{json,md,png}}")


if __name__ == "__main__":
    main()
