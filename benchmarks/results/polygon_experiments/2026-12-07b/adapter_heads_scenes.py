"""Experiment (not product code): the band-agnostic path's heads on every bench scene, paired on kept models.

For each kept model (``BENCH_KEEP_MODELS`` of bench_polygons) and each band set of its scene that the model's heads
cannot read, map the scene with the adapter fitting (a) a forest alone (the setting before this experiment) and
(b) a forest and an MLP (``ExemplarBank`` heads ``forest, mlp``, the product default after it); the same kept model,
the same seeded forest. Scored on the reference like bench_polygons. Also records each adapter's fit time and its
pickled size (a dask worker receives it with the model), and for the first model of each scene the agreement of the
two-head map fitted with 1 and with 2 threads. See README.md here.

    BENCH_KEEP_MODELS=/tmp/kept python benchmarks/bench_polygons.py --scenes nc,s2,hsi --methods carl --seeds 0,1
    BENCH_KEEP_MODELS=/tmp/kept python benchmarks/results/polygon_experiments/2026-12-07b/adapter_heads_scenes.py
"""
import json
import os
import pickle
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
import bench_polygons as bp  # noqa: E402

import carl_geo  # noqa: E402
from carl_geo.inference import predict_raster  # noqa: E402
from carl_geo.inference.writer import read_class_map  # noqa: E402

THREADS = int(os.environ.get("BENCH_THREADS", 2))
torch.set_num_threads(THREADS)
work = Path(os.environ.get("EXP_WORK", "/tmp/adapter_exp_b"))
work.mkdir(exist_ok=True)
keep = Path(os.environ["BENCH_KEEP_MODELS"])
#: band sets per scene that take the band-agnostic path (1-based band numbers for the unnamed hyperspectral bands)
SUBSETS = {
    "nc": {"4 bands (B1 B2 B3 B4)": ["B1", "B2", "B3", "B4"], "3 bands (B2 B3 B4)": ["B2", "B3", "B4"],
           "4 bands (B3 B4 B5 B7)": ["B3", "B4", "B5", "B7"]},
    "s2": bp.S2_SUBSETS,
    "hsi": {"10 bands (every 20th)": list(range(1, 201, 20)), "4 bands (nos. 10 40 80 150)": [10, 40, 80, 150]},
}
scenes = [a for a in sys.argv[1:]] or ["nc", "s2", "hsi"]
rows = []
for scene in scenes:
    spec = bp.scene_spec(scene, work)
    for seed in (0, 1):
        path = keep / f"{scene}_seed{seed}.pt"
        if not path.exists():
            print("missing", path, flush=True)
            continue
        for heads in (("forest",), ("forest", "mlp")):
            bundle = carl_geo.load_bundle(path)
            bank = bundle.model.bank
            bank.head_kinds = heads
            names = list(bundle.class_names)
            for label, bands in SUBSETS[scene].items():
                t, n_before = time.perf_counter(), len(bank._adapters)
                predict_raster(bundle, spec["image"], work / "map.tif", bands=bands, overwrite=True)
                pred, _ = read_class_map(work / "map.tif")
                s = bp.score(pred, names, spec["ref"], spec["ref_names"], names)
                fitted = list(bank._adapters.values())[n_before:]  # the adapter of this band set, if it took the path
                adapter = fitted[0] if fitted else None
                row = {"scene": scene, "seed": seed, "heads": "+".join(heads), "bands": label,
                       "path": "adapted" if adapter is not None else "other", "miou": s["miou"], "oa": s["oa"],
                       "predict_s": round(time.perf_counter() - t, 1),
                       "fit_s": round(adapter.seconds, 2) if adapter is not None else None,
                       "pickled_mb": round(len(pickle.dumps(adapter)) / 1e6, 2) if adapter is not None else None,
                       "n_pixels": adapter.n_pixels if adapter is not None else None}
                if heads == ("forest", "mlp") and seed == 0 and adapter is not None and label == list(SUBSETS[scene])[0]:
                    # the same adapter fitted with the other thread count: how much of the map changes
                    other = 1 if THREADS != 1 else 2
                    torch.set_num_threads(other)
                    bank._adapters.clear()
                    predict_raster(bundle, spec["image"], work / "map_t.tif", bands=bands, overwrite=True)
                    torch.set_num_threads(THREADS)
                    pred_t, _ = read_class_map(work / "map_t.tif")
                    row["agreement_other_threads"] = float((pred_t == pred).mean())
                rows.append(row)
                print(json.dumps(row), flush=True)
json.dump(rows, open(work / ("rows_" + "_".join(scenes) + ".json"), "w"), indent=1)
