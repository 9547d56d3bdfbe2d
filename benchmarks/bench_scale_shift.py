"""How far an input may drift from the scale a polygon model was trained on before its map changes, and where
the one-line "another scale" warning should fire (issue #28: an input at 2x the training scale got a 99.7 %
one-class map and no warning).

For each kept model of a ``bench_polygons.py`` run (``BENCH_KEEP_MODELS``: ``<scene>_seed<N>.pt``), the scene is
multiplied by factors around 1 (a brighter / darker acquisition, another scale) and mapped with the model's stored
statistics; the table gives the share of pixels whose class changed against factor 1, mIoU against the scene's
reference, and the drift measures the warning compares (the input's sampled mean minus the model's mean, in the
model's stds; the ratio of the stds).

    .venv/bin/python benchmarks/bench_scale_shift.py --models /tmp/bench_models --scenes nc,s2

Writes benchmarks/results/bench_scale_shift.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
FACTORS = (0.5, 0.8, 0.9, 1.0, 1.1, 1.25, 1.5, 2.0)


def scaled_copy(src: str, dst: Path, factor: float) -> Path:
    """A float32 GeoTIFF copy of ``src`` with every valid value multiplied by ``factor`` (nodata kept)."""
    import rasterio

    with rasterio.open(src) as ds:
        data = ds.read(masked=True).astype(np.float32)
        profile = ds.profile | {"driver": "GTiff", "dtype": "float32", "nodata": -9999.0, "compress": "deflate"}
        descriptions = ds.descriptions
    out = np.ma.filled(data * np.float32(factor), -9999.0)
    with rasterio.open(dst, "w", **profile) as ds:
        ds.write(out)
        for i, d in enumerate(descriptions, 1):
            if d:
                ds.set_band_description(i, d)
    return dst


def main() -> None:
    from bench_polygons import scene_spec, score

    import rasterio

    from carl_geo.inference import predict_raster
    from carl_geo.inference.normalization import sample_windows, scene_statistics
    from carl_geo.inference.predictor import read_window
    from carl_geo.models import load_bundle

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", required=True, type=Path)
    p.add_argument("--scenes", default="nc,s2")
    p.add_argument("--seeds", default="0")
    p.add_argument("--out", type=Path, default=ROOT / "results")
    args = p.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for scene in args.scenes.split(","):
            spec = scene_spec(scene, work)
            for seed in args.seeds.split(","):
                model_path = args.models / f"{scene}_seed{seed}.pt"
                if not model_path.is_file():
                    print(f"skipped {model_path} (missing)")
                    continue
                bundle = load_bundle(model_path)
                norm = bundle.normalization
                model_mean, model_std = float(norm["mean"]), float(norm["std"])
                base = None
                for factor in FACTORS:
                    src = spec["image"] if factor == 1.0 else scaled_copy(spec["image"], work / f"x{factor}.tif", factor)
                    with rasterio.open(src) as ds:
                        idx = list(range(1, ds.count + 1))
                        mean, std = scene_statistics(lambda w: read_window(ds, idx, w), sample_windows(ds.height, ds.width))
                    t = time.perf_counter()
                    with warnings.catch_warnings(record=True) as caught:
                        warnings.simplefilter("always")
                        predict_raster(bundle, src, work / "map.tif", device="cpu", overwrite=True)
                    with rasterio.open(work / "map.tif") as ds:
                        pred = ds.read(1).astype(np.int64)
                        nodata = ds.nodata
                    pred = np.where(pred == nodata, -1, pred) if nodata is not None else pred
                    if base is None and factor == 1.0:
                        base = pred
                    res = score(pred, list(bundle.class_names), spec["ref"], spec["ref_names"], list(bundle.class_names))
                    rows.append({"scene": scene, "seed": int(seed), "factor": factor, "miou": res["miou"],
                                 "mean_shift_stds": round((mean - model_mean) / model_std, 3),
                                 "std_ratio": round(std / model_std, 3), "seconds": round(time.perf_counter() - t, 1),
                                 "warned": any("another scale" in str(w.message) for w in caught), "pred": pred})
                    print(f"{scene} seed {seed} x{factor}: mIoU {res['miou']:.3f}, shift {rows[-1]['mean_shift_stds']:+.2f} "
                          f"std, std ratio {rows[-1]['std_ratio']:.2f}, warned {rows[-1]['warned']}", flush=True)
                for r in rows:
                    if r["scene"] == scene and r["seed"] == int(seed) and "pred" in r:
                        ok = (r["pred"] >= 0) & (base >= 0)
                        r["changed"] = round(float((r.pop("pred")[ok] != base[ok]).mean()), 4)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench_scale_shift.json").write_text(json.dumps({"date": time.strftime("%Y-%m-%d"), "rows": rows},
                                                                indent=1))
    lines = [f"# Scale drift against the training scale (benchmarks/bench_scale_shift.py, {time.strftime('%Y-%m-%d')})",
             "", "The kept models of a bench_polygons run, their own scene multiplied by a factor, mapped with the "
             "model's stored statistics; 'pixels changed' against factor 1; 'warned': the scale warning fired.", "",
             "| scene | seed | factor | pixels changed | mIoU | mean shift (model stds) | std ratio | warned |",
             "|---|---|---:|---:|---:|---:|---:|---|"]
    lines += [f"| {r['scene']} | {r['seed']} | {r['factor']} | {100 * r['changed']:.1f} % | {r['miou']:.3f} | "
              f"{r['mean_shift_stds']:+.2f} | {r['std_ratio']:.2f} | {'yes' if r['warned'] else 'no'} |" for r in rows]
    (args.out / "bench_scale_shift.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
