"""Same bands, other centres: a polygon-trained model mapping a scene whose band centres differ slightly from its
training bands' (Sentinel-2B against a 2A model, a file's centres against the nominal table, a hyperspectral
sensor's calibration shift).

Such a model reads band values with its pixel heads in the order of its training bands; bands that are not the
training bands go to its band-agnostic path (a forest fitted on its stored training pixels interpolated to the new
wavelengths, :mod:`carl_geo.models.band_adapter`). This benchmark maps each variant both ways and scores the maps on
the scene's reference (:func:`bench_polygons.score`), so that the rule deciding "same bands" is set by numbers:

* ``heads``: each given band paired one to one with the nearest training band (the heads read it as that band,
  without interpolation);
* ``adapted``: only the exact training centres reach the heads (the band-agnostic path for everything else);
* ``resampled`` (``hsi``): each pixel's spectrum interpolated linearly onto the training centres, then the full model;
* ``library``: what :class:`~carl_geo.models.pixel_classifier.PixelClassifier` decides today (``taken`` names the
  path: ``heads``, ``resampled`` = the heads on the training bands interpolated from the given ones, ``adapted``;
  its score is a forced path's where it reads the bands the same way, else it is mapped).

Variants:

* ``s2``: the same Sentinel-2A L1C pixels given with the file's centres (the training bands), with Sentinel-2B's
  centres (ESA's spectral response functions, 1.4-17 nm apart on B06, B07, B09-B12) and with the nominal table's
  centres (:mod:`carl_geo.sensors`, up to 12 nm apart);
* ``hsi``: the generated 200-band scene regenerated (same seed: same fields, classes and noise draws) with every band
  centre shifted by ``--shifts`` nm, the spectra evaluated at the shifted centres (what another unit of the same
  sensor would measure).

Models come from ``bench_polygons.py`` with ``BENCH_KEEP_MODELS=DIR`` (files ``{scene}_seed{N}.pt``):

    BENCH_KEEP_MODELS=/tmp/models python benchmarks/bench_polygons.py --scenes s2,hsi --methods carl --seeds 0
    python benchmarks/bench_band_centres.py --models /tmp/models --out benchmarks/results/band_centres
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from bench_polygons import scene_spec, score  # noqa: E402
from timing import load_average  # noqa: E402

#: Sentinel-2B centre wavelengths (µm), ESA S2-SRF (COPE-GSEG-EOPG-TN-15-0007 v3.0), B01..B12 with B8A after B08.
S2B_UM = (0.4422, 0.4921, 0.5590, 0.6649, 0.7038, 0.7391, 0.7797, 0.8329, 0.8640, 0.9432, 1.3769, 1.6104, 2.1857)


@contextlib.contextmanager
def forced_path(path: str) -> Iterator[None]:
    """Patch :meth:`PixelClassifier.band_weights` (what the heads read) so that ``heads`` pairs bands one to one by
    nearest centre (no interpolation) and ``adapted`` accepts only the exact training centres; ``library`` leaves
    the rule as it is."""
    from carl_geo.models import pixel_classifier as pcm

    if path == "library":
        yield
        return
    originals = pcm.PixelClassifier.band_weights, pcm.PixelClassifier.band_order

    def band_order(self: Any, wavelengths: Any) -> list[int] | None:
        wl = np.asarray(pcm._first_row(wavelengths))
        mine = self.wavelengths.numpy()
        if len(wl) != len(mine):
            return None
        dist = np.abs(mine[:, None] - wl[None, :])
        order = dist.argmin(1)
        if len(set(order.tolist())) != len(order):
            return None
        if path == "adapted" and dist.min(1).max() > 1e-6:
            return None
        return order.tolist()

    def band_weights(self: Any, wavelengths: Any) -> np.ndarray | None:
        order = band_order(self, wavelengths)
        return None if order is None else _one_hot(order)

    pcm.PixelClassifier.band_weights, pcm.PixelClassifier.band_order = band_weights, band_order  # type: ignore
    try:
        yield
    finally:
        pcm.PixelClassifier.band_weights, pcm.PixelClassifier.band_order = originals  # type: ignore


def _one_hot(order: Sequence[int]) -> np.ndarray:
    """(C, C) weights whose row i takes given band ``order[i]``."""
    w = np.zeros((len(order), len(order)))
    w[np.arange(len(order)), list(order)] = 1.0
    return w


def map_and_score(model: Path, image: Path, wavelengths: Sequence[float], spec: dict[str, Any], path: str,
                  work: Path) -> dict[str, Any]:
    import warnings

    from carl_geo.inference import predict_raster
    from carl_geo.inference.writer import read_class_map
    from carl_geo.models import load_bundle

    bundle = load_bundle(model)  # fresh: the band-agnostic path caches its forest per band set
    t = time.perf_counter()
    if path == "resampled":  # the spectra interpolated onto the training centres in a file, then the full model
        trained = [float(w) for w in bundle.model.wavelengths.tolist()]
        image, wavelengths, path = resample_spectra(image, wavelengths, trained, work), trained, "heads"
    with forced_path(path), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        predict_raster(bundle, image, work / "map.tif", wavelengths=list(wavelengths), overwrite=True)
        taken = bundle.model.band_path(list(wavelengths))
    pred, _ = read_class_map(work / "map.tif")
    names = list(bundle.class_names)
    return {"path": "resampled" if image.name == "resampled.tif" else path, "taken": taken, **score(pred, names, spec["ref"], spec["ref_names"], names),
            "predict_s": round(time.perf_counter() - t, 1),
            "warnings": [str(w.message)[:160] for w in caught if "band" in str(w.message)]}


def resample_spectra(image: Path, wavelengths: Sequence[float], trained: Sequence[float], work: Path) -> Path:
    """``image`` (bands at ``wavelengths`` µm) with each pixel's spectrum interpolated linearly onto ``trained``
    (µm; the nearest end band's value beyond the given range), written as float32 ``work/resampled.tif``."""
    import rasterio

    wl, tr = np.asarray(wavelengths, dtype=np.float64), np.asarray(trained, dtype=np.float64)
    order = np.argsort(wl)
    weights = np.zeros((len(tr), len(wl)))
    for i, w in enumerate(tr):
        k = int(np.clip(np.searchsorted(wl[order], w), 1, len(wl) - 1))
        a, b = wl[order][k - 1], wl[order][k]
        f = float(np.clip((w - a) / (b - a), 0.0, 1.0))
        weights[i, order[k - 1]] += 1 - f
        weights[i, order[k]] += f
    with rasterio.open(image) as src:
        data = src.read().astype(np.float64)
        profile = src.profile | {"dtype": "float32", "predictor": 1}
    out = np.tensordot(weights, data, axes=1).astype(np.float32)
    with rasterio.open(work / "resampled.tif", "w", **profile) as dst:
        dst.write(out)
    return work / "resampled.tif"


def shifted_hsi(work: Path, shift_nm: float) -> tuple[Path, list[float]]:
    """The generated scene (seed 0) with every band centre shifted by ``shift_nm``: (image, wavelengths µm)."""
    from carl_geo.sample_data import synthetic

    original = synthetic.aviris_like_wavelengths
    synthetic.aviris_like_wavelengths = lambda n=200: [round(w + shift_nm / 1000, 5) for w in original(n)]
    try:
        sc = synthetic.hyperspectral_fields(work / f"hsi_{shift_nm:+g}nm", seed=0)
    finally:
        synthetic.aviris_like_wavelengths = original
    return sc.image, list(sc.wavelengths)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", type=Path, help="folder of bench_polygons' kept models")
    ap.add_argument("--replot", action="store_true", help="rewrite the table and figure from --out's JSON")
    ap.add_argument("--scenes", default="s2,hsi")
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--shifts", default="1,2,3,4,-3", help="hsi: centre shifts in nm")
    ap.add_argument("--paths", default="heads,adapted,library")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "band_centres")
    args = ap.parse_args()
    if args.replot:
        saved = json.loads((args.out / "bench_band_centres.json").read_text())
        write_outputs(saved["rows"], saved["meta"], args.out)
        return
    if args.models is None:
        ap.error("--models is required (or --replot)")
    from carl_geo.models.band_matching import as_permutation
    from carl_geo.sensors import get_sensor

    work = Path(tempfile.mkdtemp(prefix="band_centres_"))
    rows: list[dict[str, Any]] = []
    load = [load_average()]
    for scene in args.scenes.split(","):
        spec = scene_spec(scene, work)
        for seed in (int(s) for s in args.seeds.split(",")):
            model = args.models / f"{scene}_seed{seed}.pt"
            if not model.exists():
                print(f"{scene} seed {seed}: no model {model}, skipped", flush=True)
                continue
            from carl_geo.models import load_bundle

            trained = [float(w) for w in load_bundle(model).model.wavelengths.tolist()]
            if scene == "s2":
                variants = [("file centres (training bands)", spec["image"], trained, 0.0),
                            ("Sentinel-2B centres", spec["image"], list(S2B_UM), 0.0),
                            ("nominal table", spec["image"], list(get_sensor("sentinel2_l1c").wavelengths), 0.0)]
            else:
                variants = [("training centres", spec["image"], trained, 0.0)]
                for s in (float(v) for v in args.shifts.split(",")):
                    image, wl = shifted_hsi(work, s)
                    variants.append((f"centres {s:+g} nm", image, wl, s))
            for label, image, wl, shift in variants:
                d = np.abs(np.asarray(wl) - np.asarray(trained))
                done: dict[str, dict[str, Any]] = {}
                for path in args.paths.split(","):
                    if label.startswith(("file centres", "training centres")) and path != "library":
                        continue
                    lib = load_bundle(model).model
                    taken, weights = lib.band_path(wl), lib.band_weights(wl)
                    # the library's map is a forced path's when it reads the bands the same way
                    same = "adapted" if taken == "adapted" else "heads" if taken == "heads" and weights is not None \
                        and as_permutation(weights) is not None else None
                    if path == "library" and same in done:
                        r = {**done[same], "path": "library", "taken": taken}
                    else:  # mapped for this path
                        r = map_and_score(model, Path(image), wl, spec, path, work)
                    done[path] = r
                    r.update(scene=scene, seed=seed, variant=label, shift_nm=shift,
                             max_centre_diff_nm=round(float(d.max()) * 1000, 1))
                    rows.append(r)
                    print(f"{scene} seed {seed} {label:32s} {path:8s} -> {r['taken']:8s} mIoU {r['miou']:.4f} "
                          f"OA {r['oa']:.4f} ({r['predict_s']} s)", flush=True)
    load.append(load_average())
    write_outputs(rows, {"load_before_after": load, "models": str(args.models)}, args.out)


def write_outputs(rows: list[dict[str, Any]], meta: dict[str, Any], out: Path) -> None:
    """``bench_band_centres.json``, ``.md`` (the table) and ``.png`` (mIoU against the centre shift) under ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench_band_centres.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    lines = ["| scene | seed | variant | largest centre difference (nm) | bands paired, no interpolation: mIoU (OA) | band-agnostic path: mIoU (OA) | "
             "carl_geo now: path, mIoU |", "|---|---:|---|---:|---:|---:|---|"]
    keyed: dict[tuple[str, int, str], dict[str, dict[str, Any]]] = {}
    for r in rows:
        keyed.setdefault((r["scene"], r["seed"], r["variant"]), {})[r["path"]] = r
    for (scene, seed, variant), by in keyed.items():
        def cell(p: str) -> str:
            return f"{by[p]['miou']:.3f} ({by[p]['oa']:.3f})" if p in by else ""
        lib = by.get("library")
        lib_cell = f"{lib['taken']}, {lib['miou']:.3f}" if lib else ""
        lines.append(f"| {scene} | {seed} | {variant} | {next(iter(by.values()))['max_centre_diff_nm']} | "
                     f"{cell('heads')} | {cell('adapted')} | {lib_cell} |")
    (out / "bench_band_centres.md").write_text("\n".join(lines) + f"\n\nload before / after: {meta['load_before_after']}\n")
    print("\n".join(lines))
    figure(rows, out / "bench_band_centres.png")


def figure(rows: list[dict[str, Any]], path: Path) -> None:
    """Left: the 200-band scene's mIoU against the centre shift, heads vs band-agnostic path, per seed (the library's
    limit for bands 8.9 nm apart marked). Right: Sentinel-2 with other centres, the two paths side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from carl_geo.models.band_matching import SPACING_SHARE

    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 4), gridspec_kw={"width_ratios": [3, 2]})
    hsi = [r for r in rows if r["scene"] == "hsi"]
    for seed in sorted({r["seed"] for r in hsi}):
        base = [r["miou"] for r in hsi if r["seed"] == seed and r["shift_nm"] == 0 and r["path"] == "library"]
        for p, colour, name in (("heads", "tab:blue", "heads, bands paired (no interpolation)"),
                                ("adapted", "tab:orange", "band-agnostic path"),
                                ("library", "k", "carl_geo (interpolated onto the training centres)")):
            pts = sorted((r["shift_nm"], r["miou"]) for r in hsi if r["seed"] == seed and r["path"] == p
                         and r["shift_nm"] != 0)
            pts = sorted(pts + [(0.0, base[0])] if base else pts)
            if pts:
                ax.plot(*zip(*pts), "o-" if seed == 0 else "s--", color=colour, label=f"{name}, seed {seed}")
    limit = SPACING_SHARE * 8.9
    ax.axvspan(-limit, limit, color="0.9", zorder=0, label=f"the same bands, no notice (+/-{limit:.1f} nm)")
    ax.set(xlabel="band centre shift (nm), bands 8.9 nm apart", ylabel="mIoU on the test blocks",
           title="generated 200-band scene")
    ax.legend(fontsize=7, loc="lower center")
    s2 = [r for r in rows if r["scene"] == "s2" and r["path"] in ("heads", "adapted")]
    variants = list(dict.fromkeys(r["variant"] for r in s2))
    for i, p in enumerate(("heads", "adapted")):
        vals = [next((r["miou"] for r in s2 if r["variant"] == v and r["path"] == p), 0.0) for v in variants]
        bx.bar(np.arange(len(variants)) + (i - 0.5) * 0.38, vals, 0.38, label=p if p == "heads" else "band-agnostic",
               color="tab:blue" if p == "heads" else "tab:orange")
    own = [r["miou"] for r in rows if r["scene"] == "s2" and r["shift_nm"] == 0 and r["variant"].startswith("file")]
    if own:
        bx.axhline(own[0], color="k", lw=1, ls=":", label="the file's own centres")
    bx.set_xticks(range(len(variants)), [v.replace(" centres", "\ncentres") for v in variants], fontsize=8)
    bx.set(ylabel="mIoU on the test polygons", title="Sentinel-2 (same pixels, other centres)")
    bx.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
