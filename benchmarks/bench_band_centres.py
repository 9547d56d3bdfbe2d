"""Same bands, other centres: a polygon-trained model mapping a scene whose band centres differ slightly from its
training bands' (Sentinel-2B against a 2A model, a file's centres against the nominal table, a hyperspectral
sensor's calibration shift).

Such a model reads band values with its pixel heads in the order of its training bands; bands that are not the
training bands go to its band-agnostic path (a forest fitted on its stored training pixels interpolated to the new
wavelengths, :mod:`carl_geo.models.band_adapter`). This benchmark maps each variant both ways and scores the maps on
the scene's reference (:func:`bench_polygons.score`), so that the rule deciding "same bands" is set by numbers:

* ``heads``: each given band paired one to one with the nearest training band (the heads read it as that band);
* ``adapted``: only the exact training centres reach the heads (the band-agnostic path for everything else);
* ``library``: what :class:`~carl_geo.models.pixel_classifier.PixelClassifier` decides today (``taken`` names the
  path; its score is that forced path's, mapped again only when that path was not run).

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
    """Patch :meth:`PixelClassifier.band_order` so that ``heads`` pairs bands one to one by nearest centre and
    ``adapted`` accepts only the exact training centres; ``library`` leaves the rule as it is."""
    from carl_geo.models import pixel_classifier as pcm

    if path == "library":
        yield
        return
    original = pcm.PixelClassifier.band_order

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

    pcm.PixelClassifier.band_order = band_order  # type: ignore[method-assign]
    try:
        yield
    finally:
        pcm.PixelClassifier.band_order = original  # type: ignore[method-assign]


def map_and_score(model: Path, image: Path, wavelengths: Sequence[float], spec: dict[str, Any], path: str,
                  work: Path) -> dict[str, Any]:
    import warnings

    from carl_geo.inference import predict_raster
    from carl_geo.inference.writer import read_class_map
    from carl_geo.models import load_bundle

    bundle = load_bundle(model)  # fresh: the band-agnostic path caches its forest per band set
    t = time.perf_counter()
    with forced_path(path), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        predict_raster(bundle, image, work / "map.tif", wavelengths=list(wavelengths), overwrite=True)
        taken = bundle.model.band_path(list(wavelengths))
    pred, _ = read_class_map(work / "map.tif")
    names = list(bundle.class_names)
    return {"path": path, "taken": taken, **score(pred, names, spec["ref"], spec["ref_names"], names),
            "predict_s": round(time.perf_counter() - t, 1),
            "warnings": [str(w.message)[:160] for w in caught if "band" in str(w.message)]}


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
                    taken = load_bundle(model).model.band_path(wl)
                    if path == "library" and taken in ("heads", "adapted") and (
                            "adapted" if taken == "adapted" else "heads") in done:
                        r = {**done["adapted" if taken == "adapted" else "heads"], "path": "library", "taken": taken}
                    else:  # the library's path was not mapped forced: map it
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
    lines = ["| scene | seed | variant | largest centre difference (nm) | heads mIoU (OA) | band-agnostic mIoU (OA) | "
             "library: path, mIoU |", "|---|---:|---|---:|---:|---:|---|"]
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
        for p, colour, name in (("heads", "tab:blue", "heads (bands read as the training bands)"),
                                ("adapted", "tab:orange", "band-agnostic path")):
            pts = sorted((r["shift_nm"], r["miou"]) for r in hsi if r["seed"] == seed and r["path"] == p)
            pts = sorted(pts + [(0.0, base[0])] if base else pts)
            if pts:
                ax.plot(*zip(*pts), "o-" if seed == 0 else "s--", color=colour, label=f"{name}, seed {seed}")
    limit = SPACING_SHARE * 8.9
    ax.axvspan(-limit, limit, color="0.9", zorder=0, label=f"read as the training bands (+/-{limit:.1f} nm)")
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
