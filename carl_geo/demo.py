"""``carl-geo demo``: land cover of a real scene from an analyst's polygons, end to end.

Two shipped scenes (``--scene``):

* ``nc`` (default): the GRASS GIS North Carolina Landsat 7 ETM+ scene
  (:func:`carl_geo.sample_data.nc_landsat7`, 6 bands, 28.5 m), 1996 training polygons, scored against
  the dense reference map ``strata.tif`` on the pixels OUTSIDE the training polygons;
* ``sentinel2``: the Sentinel-2A L1C Havelland scene (:func:`carl_geo.sample_data.sentinel2_havelland`,
  13 band files at 10/20/60 m read through a VRT), OpenStreetMap land-use training polygons, scored on
  spatially separate held-out polygons; the same CARL model also maps the scene from only the four
  10 m bands (B02 B03 B04 B08, a 4-band camera) without retraining.

For either scene the demo

1. trains from the training polygons only what ``carl-geo train`` keeps
   (:func:`carl_geo.polygon_training.train_from_polygons`: the tiny CARL end to end, then per-pixel heads on
   window context and CARL's class probabilities; no pretrained weights);
2. predicts the whole scene at pixel resolution with the tiled predictor
   (:func:`carl_geo.inference.predict_raster`) into a classified GeoTIFF with colour table and class names;
3. trains the two per-pixel baselines on the same polygons and bands: a random forest on the bands and the
   stronger forest + context (the bands and window means of their principal components);
4. scores all on the held-out reference (overall accuracy, per-class IoU, mean IoU) and draws a side-by-side
   PNG (false colour | CARL | forest + context | forest | reference).

CPU only by default; about 3 minutes on 2 cores for nc, about 10 for sentinel2 (its larger labelled area gets
a larger training budget; ``--quick``: a smoke run, scores not meaningful).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from carl_geo.errors import CarlGeoError

DEFAULT_OUT = "carl_demo_output"
#: Training steps of ``--quick`` (a smoke run).
QUICK_STEPS = 30
#: Files the demo writes into its output folder.
DEMO_OUTPUTS = ("carl_landcover.pt", "carl_landcover_confusion.png", "carl_landcover.tif", "carl_landcover_4_bands.tif",
                "random_forest_landcover.tif", "forest_context_landcover.tif", "carl_demo.png", "scores.json")
RF_TREES = 200
#: None (unweighted) scored higher than "balanced" on the NC scene (OA 0.54 vs 0.52), so the
#: baseline uses it: the comparison is against the stronger forest.
RF_CLASS_WEIGHT: str | None = None
#: The forest is fitted on at most this many training pixels (a random sample; more does not help it).
RF_MAX_SAMPLES = 100_000
#: Demo scenes: ``carl-geo demo --scene NAME``.
SCENES = ("nc", "sentinel2")
#: Bands of the "4-band camera" the Sentinel-2 demo also maps with the same model.
S2_FOUR_BANDS = ("B02", "B03", "B04", "B08")


def _load_scene(name: str) -> tuple[Any, dict[str, Any]]:
    """The shipped scene and how the demo shows and scores it."""
    from carl_geo.sample_data import nc_landsat7, sentinel2_havelland

    if name == "nc":
        return nc_landsat7(), {"title": "Landsat 7 ETM+ 2000", "false_colour": ("B4", "B3", "B2"),
                               "reference_title": "reference strata.tif"}
    if name == "sentinel2":
        return sentinel2_havelland(), {"title": "Sentinel-2A L1C 2017-02-16", "false_colour": ("B08", "B04", "B03"),
                                       "reference_title": "held-out OSM polygons"}
    raise CarlGeoError(f"unknown demo scene {name!r}; choose one of {', '.join(SCENES)}")


def _read_scene(scene) -> dict[str, Any]:
    """Image (C, H, W) float32, valid mask, grid, training polygon masks and the scoring reference:
    ``reference`` (H, W) int64 index into ``scene.class_names`` (-1 = not scored) and ``in_polygons``."""
    import rasterio

    from carl_geo.datasets.vector_labels import IGNORE_INDEX, rasterize_labels, read_label_vector

    with rasterio.open(scene.image) as src:
        data = src.read(masked=True)
        transform, crs, shape = src.transform, src.crs, (src.height, src.width)
    valid = ~np.ma.getmaskarray(data).any(0)
    gdf = read_label_vector(scene.polygons, scene.label_field)
    labels = rasterize_labels(gdf, scene.label_field, shape=shape, transform=transform, crs=crs)
    touched = rasterize_labels(gdf, scene.label_field, shape=shape, transform=transform, crs=crs, all_touched=True)
    # pixels touched by any training polygon (also where polygons of two classes overlap) are never scored
    in_polygons = (touched.polygon_ids > 0) | (touched.mask != IGNORE_INDEX)
    if hasattr(scene, "strata"):
        with rasterio.open(scene.strata) as ref:
            if (ref.height, ref.width) != shape or not ref.transform.almost_equals(transform):
                raise CarlGeoError(f"{scene.strata} is not on the grid of {scene.image}")
            strata = np.asarray(ref.read(1, masked=True).filled(0), dtype=np.int64)
        reference = np.where(strata > 0, strata - 1, -1)
    else:
        test = rasterize_labels(read_label_vector(scene.test_polygons, scene.label_field), scene.label_field,
                                shape=shape, transform=transform, crs=crs, class_names=list(scene.class_names))
        reference = np.where(test.mask == IGNORE_INDEX, -1, test.mask)
    reference = np.where(valid & ~in_polygons, reference, -1)
    return {"image": np.asarray(data.filled(0), dtype=np.float32), "valid": valid, "transform": transform,
            "crs": crs, "labels": labels, "in_polygons": in_polygons, "reference": reference}


def _random_forest(data: dict[str, Any], seed: int, n_trees: int, context: bool = False,
                   class_weight: str | None = RF_CLASS_WEIGHT) -> tuple[np.ndarray, list[str], float]:
    """Per-pixel RandomForest on the polygon pixels, on the bands or (``context``) on the bands and the window means
    of their principal components (:class:`~carl_geo.models.context_features.ContextFeatures`, fitted on the scene);
    returns (H, W) class index map (-1 nodata), its class names and the seconds it took (fit + predict)."""
    from sklearn.ensemble import RandomForestClassifier

    t0 = time.perf_counter()
    img, valid, lab = data["image"], data["valid"], data["labels"]
    if context:
        import torch

        from carl_geo.models.context_features import ContextFeatures

        pixels = img[:, valid].T
        rng = np.random.default_rng(seed)
        sample = pixels[rng.choice(len(pixels), min(len(pixels), 200_000), replace=False)]
        ctx = ContextFeatures(img.shape[0]).fit(torch.from_numpy(np.ascontiguousarray(sample)))
        with torch.no_grad():
            img = ctx(torch.from_numpy(img)[None])[0].numpy()
    train = np.flatnonzero((valid & (lab.mask >= 0)).ravel())
    if len(train) > RF_MAX_SAMPLES:
        train = np.sort(np.random.default_rng(seed).choice(train, RF_MAX_SAMPLES, replace=False))
    x = img.reshape(img.shape[0], -1)[:, train].T
    y = lab.mask.ravel()[train]
    rf = RandomForestClassifier(n_estimators=n_trees, n_jobs=os.cpu_count() or 1, random_state=seed,
                                class_weight=class_weight)
    rf.fit(x, y)
    pred = np.full(valid.shape, -1, dtype=np.int64)
    pred[valid] = rf.predict(img[:, valid].T)
    return pred, list(lab.class_names), time.perf_counter() - t0


def _score(pred: np.ndarray, pred_names: list[str], reference: np.ndarray, ref_names: tuple[str, ...],
           trained: list[str]) -> dict[str, Any]:
    """Scores of a class-index map against the reference (index into ``ref_names``, -1 = not scored)."""
    from carl_geo.polygon_training.metrics import confusion_matrix, mean_iou, overall_accuracy, per_class_iou

    to_ref = np.array([ref_names.index(n) for n in pred_names] + [-1])  # -1 (nodata) stays -1
    p = to_ref[np.where(pred >= 0, pred, len(pred_names))]
    scored = reference >= 0
    cm = confusion_matrix(reference[scored], p[scored], len(ref_names))
    iou = per_class_iou(cm)
    idx = [ref_names.index(n) for n in trained]
    sub = cm[np.ix_(idx, idx)]
    return {
        "overall_accuracy": overall_accuracy(cm),
        "mean_iou": float(np.nanmean(iou[idx])),
        "mean_iou_all_reference_classes": mean_iou(cm),
        "per_class_iou": {n: (None if np.isnan(v) else round(float(v), 4)) for n, v in zip(ref_names, iou)},
        "accuracy_on_trained_classes": overall_accuracy(sub) if sub.sum() else float("nan"),
        "confusion_matrix": cm.tolist(),
    }


def _write_classes(path: Path, pred: np.ndarray, like: Path, names: list[str], colors) -> Path:
    """Class map (H, W) -> uint8 GeoTIFF on the grid of ``like`` (255 nodata) with colour table."""
    import rasterio

    with rasterio.open(like) as src:
        profile = {"driver": "GTiff", "width": src.width, "height": src.height, "count": 1, "dtype": "uint8",
                   "crs": src.crs, "transform": src.transform, "nodata": 255, "compress": "deflate"}
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(np.where(pred >= 0, pred, 255).astype(np.uint8), 1)
        dst.write_colormap(1, {i: (*c, 255) for i, c in enumerate(colors)})
        dst.update_tags(CLASS_NAMES=json.dumps(names))
    return path


def _false_colour(img: np.ndarray, valid: np.ndarray, band_names: tuple[str, ...],
                  bands: tuple[str, str, str]) -> np.ndarray:
    """(H, W, 3) float RGB of the three named bands (NIR, red, green), 2-98 % stretch per band."""
    idx = [band_names.index(b) for b in bands]
    rgb = np.zeros(img.shape[1:] + (3,), dtype=np.float32)
    for j, i in enumerate(idx):
        band = img[i]
        lo, hi = np.percentile(band[valid], [2, 98])
        rgb[..., j] = np.clip((band - lo) / max(hi - lo, 1e-6), 0, 1)
    rgb[~valid] = 1.0
    return rgb


def _figure(path: Path, data: dict[str, Any], scene, show: dict[str, Any],
            maps: list[tuple[str, np.ndarray]]) -> Path:
    """Panels: false colour with the training polygons, then each class map (values: reference
    class index + 1, 0 = nodata / not shown). Two rows for wide scenes."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    cmap = ListedColormap([(1, 1, 1)] + [tuple(v / 255 for v in c) for c in scene.colors])
    n = 1 + len(maps)
    h, w = data["valid"].shape
    cols = n if w <= 1.3 * h else 2
    rows = -(-n // cols)
    pw = 4.2 if cols == n else 6.0
    fig, axes = plt.subplots(rows, cols, figsize=(pw * cols, rows * pw * h / w + 1.1), squeeze=False)
    axes = axes.ravel()
    axes[0].imshow(_false_colour(data["image"], data["valid"], scene.band_names, show["false_colour"]))
    axes[0].contour(data["labels"].polygon_ids > 0, levels=[0.5], colors="yellow", linewidths=0.6)
    axes[0].set_title(f"{show['title']} ({'/'.join(show['false_colour'])})\ntraining polygons in yellow", fontsize=9)
    for ax, (title, codes) in zip(axes[1:], maps):
        ax.imshow(codes, cmap=cmap, vmin=-0.5, vmax=len(scene.class_names) + 0.5, interpolation="nearest")
        ax.set_title(title, fontsize=9)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in axes[n:]:
        ax.axis("off")
    fig.legend(handles=[Patch(color=tuple(v / 255 for v in c), label=nm) for nm, c in zip(scene.class_names,
                                                                                          scene.colors)],
               loc="lower center", ncol=len(scene.class_names), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _codes(pred: np.ndarray, names: list[str], ref_names: tuple[str, ...]) -> np.ndarray:
    to_code = np.array([ref_names.index(n) + 1 for n in names] + [0])
    return to_code[np.where(pred >= 0, pred, len(names))]


def check_demo_outputs(out: Path, scene: Any, *, overwrite: bool) -> None:
    """Refuse a demo output that is one of the scene's files, or (``overwrite=False``) that exists."""
    from carl_geo.io.output_paths import check_outputs, reads_of

    if out.is_dir():
        rasters = [("sample scene", scene.image)] + ([("reference map", scene.strata)] if hasattr(scene, "strata") else [])
        vectors = [("sample polygons", scene.polygons)] + (
            [("test polygons", scene.test_polygons)] if hasattr(scene, "test_polygons") else [])
        check_outputs([("demo output", out / name) for name in DEMO_OUTPUTS], reads_of(rasters, vectors),
                      overwrite=overwrite)


def run_demo(out_dir: str | os.PathLike = DEFAULT_OUT, *, scene: str = "nc", max_steps: int | None = None,
             quick: bool = False, seed: int = 0, device: str = "cpu", rf_trees: int | None = None,
             log: Callable[[str], None] | None = None,
             progress: Callable[[int, int], bool | None] | None = None,
             epochs: int | None = None, overwrite: bool = True) -> dict[str, Any]:
    """Run the demo and return its results.

    Args:
        out_dir: folder for the outputs (created).
        scene: ``"nc"`` (Landsat 7, dense reference map) or ``"sentinel2"`` (13-band Sentinel-2 with
            OSM polygons; also maps the scene from 4 bands with the same model).
        max_steps: CARL training steps at most (default: the recipe's; :data:`QUICK_STEPS` with ``quick``).
        quick: a fast smoke run (few steps, a smaller forest); scores are then not meaningful.
        seed: seeds CARL training and the RandomForest.
        device: where CARL trains and predicts (the demo is meant for ``"cpu"``).
        log: receives progress lines (default: silent).
        progress: passed to the CARL training (``progress(done, total)``).
        epochs: deprecated, use ``max_steps``.
        overwrite: replace the files of an earlier run in ``out_dir`` (:data:`DEMO_OUTPUTS`); never
            the shipped scene's files.

    Returns:
        dict with ``carl`` and ``baseline`` scores (overall_accuracy, mean_iou over the trained
        classes, mean_iou_all_reference_classes, per_class_iou, confusion_matrix against the
        reference classes), ``winner``, ``n_eval_pixels``, ``classes_trained``, ``paths``
        (model, geotiff, baseline_geotiff, png, confusion_png, scores_json), ``seconds`` (per step
        and ``total``), the CARL ``training_report`` and, for ``sentinel2``, ``carl_4_bands``
        (scores of the same model given only B02 B03 B04 B08).
    """
    from carl_geo.inference import predict_raster
    from carl_geo.inference.writer import read_class_map
    from carl_geo.models import save_bundle
    from carl_geo.polygon_training import train_from_polygons

    t_start = time.perf_counter()
    say = log or (lambda _m: None)
    sc, show = _load_scene(scene)
    out = Path(out_dir)
    check_demo_outputs(out, sc, overwrite=overwrite)
    out.mkdir(parents=True, exist_ok=True)
    if epochs is not None and max_steps is None:
        from carl_geo.polygon_training.recipe import steps_for_epochs

        max_steps = steps_for_epochs(epochs, None)
    steps = max_steps or (QUICK_STEPS if quick else None)
    seconds: dict[str, float] = {}

    data = _read_scene(sc)
    trained = list(data["labels"].class_names)
    missing = [n for n in sc.class_names if n not in trained]
    say(f"scene {sc.image.name}: {data['valid'].shape[1]} x {data['valid'].shape[0]} px, "
        f"{len(sc.wavelengths)} bands {sc.wavelengths} µm; polygons: {len(trained)} classes {trained}"
        + (f" (no polygon for {missing}: those reference pixels count as errors for both methods)" if missing else ""))

    # 1. CARL, trained end to end from the polygons only
    t = time.perf_counter()
    model_path = out / "carl_landcover.pt"
    settings: dict[str, Any] = {"seed": seed}
    if steps:
        settings["max_steps"] = steps
    result = train_from_polygons(sc.image, sc.polygons, sc.label_field, model_path, sensor=sc.sensor,
                                 device=device, log=say, progress=progress, **settings)
    bundle = result.bundle
    colors = dict(zip(sc.class_names, sc.colors))
    bundle.colors = [colors[n] for n in bundle.class_names]
    save_bundle(bundle, model_path)
    seconds["carl_training"] = time.perf_counter() - t

    # 2. whole scene with the tiled predictor
    t = time.perf_counter()
    carl_tif = out / "carl_landcover.tif"
    predict_raster(bundle, sc.image, carl_tif, output="classes", device=device)
    seconds["carl_prediction"] = time.perf_counter() - t
    carl_pred, _ = read_class_map(carl_tif)
    few_tif, few_pred = None, None
    if scene == "sentinel2":  # the same model, a 4-band camera
        few_tif = out / "carl_landcover_4_bands.tif"
        predict_raster(bundle, sc.image, few_tif, output="classes", device=device, bands=list(S2_FOUR_BANDS))
        few_pred, _ = read_class_map(few_tif)

    # 3. per-pixel baselines on the same polygons and bands: the forest + context (the strong one) and the forest
    trees = rf_trees or (50 if quick else RF_TREES)
    ctx_pred, rf_names, seconds["baseline"] = _random_forest(data, seed, trees, context=True)
    rf_pred, _, seconds["baseline_bands"] = _random_forest(data, seed, trees)
    rf_colors = [colors[n] for n in rf_names]
    ctx_tif = _write_classes(out / "forest_context_landcover.tif", ctx_pred, sc.image, rf_names, rf_colors)
    rf_tif = _write_classes(out / "random_forest_landcover.tif", rf_pred, sc.image, rf_names, rf_colors)

    # 4. scores on reference pixels outside the training polygons
    ref = data["reference"]
    kept = result.report.get("kept", "carl")
    scores_carl = _score(carl_pred, list(bundle.class_names), ref, sc.class_names, trained)
    scores_ctx = _score(ctx_pred, rf_names, ref, sc.class_names, trained)
    scores_rf = _score(rf_pred, rf_names, ref, sc.class_names, trained)
    maps = [((f"CARL: {kept} ({result.report['steps']} steps)\nOA {scores_carl['overall_accuracy']:.3f}  "
              f"mIoU {scores_carl['mean_iou']:.3f}"), _codes(carl_pred, list(bundle.class_names), sc.class_names))]
    scores_few = None
    if few_pred is not None:
        scores_few = _score(few_pred, list(bundle.class_names), ref, sc.class_names, trained)
        maps.append(((f"same model, 4 bands ({' '.join(S2_FOUR_BANDS)})\nOA "
                      f"{scores_few['overall_accuracy']:.3f}  mIoU {scores_few['mean_iou']:.3f}"),
                     _codes(few_pred, list(bundle.class_names), sc.class_names)))
    maps += [((f"forest + context (baseline)\nOA {scores_ctx['overall_accuracy']:.3f}  "
               f"mIoU {scores_ctx['mean_iou']:.3f}"), _codes(ctx_pred, rf_names, sc.class_names)),
             ((f"forest on the bands\nOA {scores_rf['overall_accuracy']:.3f}  "
               f"mIoU {scores_rf['mean_iou']:.3f}"), _codes(rf_pred, rf_names, sc.class_names)),
             (show["reference_title"], np.where(ref >= 0, ref + 1, 0))]
    png = _figure(out / "carl_demo.png", data, sc, show, maps)
    seconds["total"] = time.perf_counter() - t_start
    d_oa = scores_carl["overall_accuracy"] - scores_ctx["overall_accuracy"]
    d_miou = scores_carl["mean_iou"] - scores_ctx["mean_iou"]
    winner = "CARL" if d_oa > 0 and d_miou > 0 else "RandomForest" if d_oa < 0 and d_miou < 0 else "mixed"
    res: dict[str, Any] = {
        "scene": scene, "carl": scores_carl, "kept": kept, "baseline": scores_ctx,
        "baseline_name": f"forest + context ({trees} trees)", "forest_on_bands": scores_rf,
        "winner": winner, "n_eval_pixels": int((ref >= 0).sum()), "classes_trained": trained,
        "classes_without_polygons": missing, "steps": result.report["steps"], "quick": quick,
        "training_report": result.report,
        "paths": {"model": str(model_path), "geotiff": str(carl_tif), "baseline_geotiff": str(ctx_tif),
                  "forest_geotiff": str(rf_tif),
                  "png": str(png), "confusion_png": str(result.confusion_png) if result.confusion_png else None,
                  "scores_json": str(out / "scores.json")},
        "seconds": {k: round(v, 2) for k, v in seconds.items()},
    }
    if scores_few is not None:
        res["carl_4_bands"] = scores_few
        res["paths"]["geotiff_4_bands"] = str(few_tif)
    (out / "scores.json").write_text(json.dumps(res, indent=2))
    return res


def format_summary(res: dict[str, Any]) -> str:
    """The lines ``carl-geo demo`` prints."""
    c, b, f = res["carl"], res["baseline"], res["forest_on_bands"]
    where = ("outside the training polygons" if res.get("scene", "nc") == "nc"
             else "of the held-out polygons")
    lines = [
        (f"Scores on {res['n_eval_pixels']} reference pixels {where} "
         f"(mIoU over the {len(res['classes_trained'])} classes that have polygons):"),
        f"  {'CARL, kept: ' + res['kept']:<37s} OA {c['overall_accuracy']:.3f}   mIoU {c['mean_iou']:.3f}",
    ]
    if "carl_4_bands" in res:
        f4 = res["carl_4_bands"]
        lines.append(f"  {'same model from 4 bands':<37s} OA {f4['overall_accuracy']:.3f}   "
                     f"mIoU {f4['mean_iou']:.3f}")
    lines += [
        f"  {res['baseline_name']:<37s} OA {b['overall_accuracy']:.3f}   mIoU {b['mean_iou']:.3f}",
        f"  {'forest on the bands':<37s} OA {f['overall_accuracy']:.3f}   mIoU {f['mean_iou']:.3f}",
        "  per-class IoU (CARL / forest + context): " + ", ".join(
            f"{n} {_f(c['per_class_iou'][n])}/{_f(b['per_class_iou'][n])}" for n in c["per_class_iou"]),
    ]
    if res["classes_without_polygons"]:
        lines.append(f"  no polygon for {res['classes_without_polygons']}: those pixels are errors for both methods")
    verdict = {"CARL": "CARL beats the forest + context on both OA and mIoU.", "RandomForest": "The forest + context "
               "baseline wins on both OA and mIoU.", "mixed": "Mixed result: CARL and the forest + context each win "
               "one of OA / mIoU."}[res["winner"]]
    lines.append(f"  {verdict}" + ("  (--quick run: scores not meaningful)" if res["quick"] else ""))
    lines.append(f"outputs in {Path(res['paths']['png']).parent}: " + ", ".join(
        Path(p).name for k, p in res["paths"].items() if p))
    s = res["seconds"]
    lines.append(f"wall time {s['total']:.0f} s (CARL training {s['carl_training']:.0f} s, prediction "
                 f"{s['carl_prediction']:.0f} s, forests {s['baseline'] + s['baseline_bands']:.0f} s)")
    return "\n".join(lines)


def _f(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.2f}"


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``demo`` sub-command."""
    p = subparsers.add_parser(
        "demo", help="land cover of a real scene from polygons, CARL vs forest baselines",
        description="Train what carl-geo train keeps (the tiny CARL and per-pixel heads) from training polygons on a "
                    "shipped real scene, classify the whole scene at pixel resolution, compare with a forest + "
                    "context and a forest on the bands on held-out reference pixels. Scenes: nc "
                    "(GRASS GIS North Carolina Landsat 7, CC BY-SA 3.0; default) and sentinel2 (Sentinel-2 L1C "
                    "with OpenStreetMap land-use polygons, ODbL; also maps the scene from 4 bands with the same "
                    "model). CPU: about 3 min (nc) or 10 min (sentinel2) on 2 cores.",
    )
    p.add_argument("--scene", default="nc", choices=SCENES, help="shipped scene (default nc)")
    p.add_argument("--out", default=DEFAULT_OUT, help=f"output folder (default ./{DEFAULT_OUT})")
    p.add_argument("--max-steps", type=int, help="CARL training steps at most (default: the training recipe's)")
    p.add_argument("--quick", action="store_true", help=f"smoke run: {QUICK_STEPS} steps, smaller forest")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=int, help=argparse.SUPPRESS)  # deprecated: --max-steps
    p.add_argument("--overwrite", action="store_true", help="replace the files of an earlier run in --out")
    p.set_defaults(func=_run)
    return p


def _run(args: argparse.Namespace) -> int:
    from carl_geo.progress_bar import ProgressBar

    for flag in ("max_steps", "epochs"):
        v = getattr(args, flag)
        if v is not None and v < 1:
            raise CarlGeoError(f"--{flag.replace('_', '-')} must be >= 1, got {v}")
    with ProgressBar("training CARL", "step") as bar:
        res = run_demo(args.out, scene=args.scene, max_steps=args.max_steps, epochs=args.epochs, quick=args.quick,
                       seed=args.seed, log=bar.log, progress=bar, overwrite=args.overwrite)
    print(format_summary(res))
    return 0
