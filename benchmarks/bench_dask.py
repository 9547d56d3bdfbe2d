"""Scale-out gives the same map: predict_dataarray (dask) against predict_raster on real scenes (issue #31).

For each scene (NC Landsat 7 and the Sentinel-2 window) and a polygon-trained model of that scene
(``--models DIR`` holding ``nc_seed0.pt`` / ``s2_seed0.pt`` as ``BENCH_KEEP_MODELS`` of bench_polygons.py writes
them; a short 60-step model is trained when one is missing), the class map of ``predict_raster`` is compared with
``predict_dataarray`` at several chunk sizes on a ``distributed`` cluster of 1 and 2 single-thread workers: pixel
agreement, max difference of the probabilities, wall time and megapixels per second.

    .venv/bin/python benchmarks/bench_dask.py [--scenes nc,s2] [--chunks 128,256,1024] [--models DIR]

Writes ``benchmarks/results/bench_dask.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from timing import load_average  # noqa: E402  (benchmarks/timing.py: one load reading for every benchmark)


def scene_model(scene: str, models: Path | None, work: Path) -> tuple[str, Path]:
    """(image path, model path) for a scene; trains a 60-step model when none is given."""
    from bench_polygons import scene_spec

    spec = scene_spec(scene, work)
    if models is not None and (models / f"{scene}_seed0.pt").is_file():
        return str(spec["image"]), models / f"{scene}_seed0.pt"
    from carl_geo.polygon_training import train_from_polygons

    out = work / f"{scene}_60.pt"
    train_from_polygons(spec["image"], spec["polygons"], spec["label_field"], out, max_steps=60, seed=0,
                        device="cpu")
    return str(spec["image"]), out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scenes", default="nc,s2")
    p.add_argument("--chunks", default="128,256,1024")
    p.add_argument("--workers", default="1,2")
    p.add_argument("--models", default=None)
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = p.parse_args()

    import rasterio
    import rioxarray
    from distributed import Client, LocalCluster

    from carl_geo.inference import predict_dataarray, predict_raster
    from carl_geo.models import load_bundle

    meta = {"date": time.strftime("%Y-%m-%d"), "machine": f"{platform.processor() or platform.machine()}, "
            f"{os.cpu_count()} cores", "load_start": load_average()}
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for scene in args.scenes.split(","):
            image, model_path = scene_model(scene, Path(args.models) if args.models else None, work)
            bundle = load_bundle(model_path)
            t = time.perf_counter()
            predict_raster(bundle, image, work / "ref.tif", output="probabilities", device="cpu")
            raster_s = time.perf_counter() - t
            with rasterio.open(work / "ref.tif") as src:
                ref = src.read()
                h, w = src.shape
            ok = np.isfinite(ref).all(0)
            ref_cls = ref.argmax(0)
            rows.append({"scene": scene, "how": "predict_raster", "chunk": None, "workers": None,
                         "seconds": round(raster_s, 1), "mpx_per_s": round(h * w / 1e6 / raster_s, 3),
                         "agreement": 1.0, "max_prob_diff": 0.0})
            print(rows[-1], flush=True)
            da = rioxarray.open_rasterio(image)
            for n in (int(v) for v in args.workers.split(",")):
                with LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None) as cl, \
                        Client(cl) as client:
                    for chunk in (int(c) for c in args.chunks.split(",")):
                        t = time.perf_counter()
                        out = predict_dataarray(bundle, da, chunk_size=chunk, client=client, output="probabilities",
                                                device="cpu").values
                        s = time.perf_counter() - t
                        agree = float((out.argmax(0) == ref_cls)[ok].mean())
                        rows.append({"scene": scene, "how": "predict_dataarray", "chunk": chunk, "workers": n,
                                     "seconds": round(s, 1), "mpx_per_s": round(h * w / 1e6 / s, 3),
                                     "agreement": round(agree, 6),
                                     "max_prob_diff": float(np.nanmax(np.abs(out - ref)[:, ok]))})
                        print(rows[-1], flush=True)
            rows[-1]["size"] = f"{w} x {h}"
    meta["load_end"] = load_average()
    meta["loaded"] = max((v for v in (meta["load_start"], meta["load_end"]) if v is not None), default=0) > (os.cpu_count() or 1)
    out = Path(args.out)
    (out / "bench_dask.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    lines = [f"# predict_dataarray (dask) against predict_raster, {meta['date']}, {meta['machine']}, load "
             f"{meta['load_start']} -> {meta['load_end']}" + (" (LOADED: above the core count)" if meta["loaded"] else ""),
             "", "| scene | how | chunk px | workers | s | Mpx/s | class agreement | max prob. diff |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['scene']} | {r['how']} | {r['chunk'] or ''} | {r['workers'] or ''} | {r['seconds']} | "
                     f"{r['mpx_per_s']} | {100 * r['agreement']:.4f} % | {r['max_prob_diff']:.1e} |")
    (out / "bench_dask.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
