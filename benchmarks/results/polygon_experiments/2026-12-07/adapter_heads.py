"""Experiment (not product code): heads of the band-agnostic path, paired on kept Sentinel-2 models.

For each kept model and each band subset of bench_polygons (4 and 6 bands), map Sentinel-2 from that subset with
the adapter's head as today (a forest on the stored pixels' context features), the mean of that forest and an MLP
(``polygon_training.heads.fit_mlp`` on the same features), or the MLP alone; CARL's weight stays the model's (1/3).
Scored on the test polygons like bench_polygons. See README.md here.

    BENCH_KEEP_MODELS=/tmp/kept python benchmarks/bench_polygons.py --scenes s2 --methods carl --seeds 0,1
    BENCH_KEEP_MODELS=/tmp/kept python benchmarks/results/polygon_experiments/2026-12-07/adapter_heads.py 0 1
"""
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
import bench_polygons as bp  # noqa: E402

import carl_geo  # noqa: E402
from carl_geo.inference import predict_raster  # noqa: E402
from carl_geo.inference.writer import read_class_map  # noqa: E402
from carl_geo.models import band_adapter as ba  # noqa: E402
from carl_geo.polygon_training.heads import fit_mlp  # noqa: E402

torch.set_num_threads(2)
work = Path(os.environ.get("EXP_WORK", "/tmp/adapter_exp"))
work.mkdir(exist_ok=True)
spec = bp.scene_spec("s2", work)
VARIANT = {"v": "forest"}
orig_fit = ba.ExemplarBank._fit


class Fused(torch.nn.Module):
    def __init__(self, base, mlp, mode):
        super().__init__()
        self.base, self.mlp, self.mode = base, mlp, mode
        self.n_pixels, self.seconds, self.context, self.forest = base.n_pixels, base.seconds, base.context, base.forest

    def forward(self, img):
        feats = self.base.context(img)
        b, f, h, w = feats.shape
        flat = feats.permute(0, 2, 3, 1).reshape(-1, f)
        p_mlp = self.mlp(flat).softmax(-1)
        if self.mode == "mlp":
            prob = p_mlp
        else:
            prob = (self.base.forest(flat).to(p_mlp.dtype) + p_mlp) / 2
        return prob.reshape(b, h, w, -1).permute(0, 3, 1, 2)


def fit(self, weights):
    base = orig_fit(self, weights)
    if VARIANT["v"] == "forest":
        return base
    vals = self.values.float().numpy()
    new = np.einsum("jc,ncw->njw", weights, vals).astype(np.float32)
    bands = torch.from_numpy(np.ascontiguousarray(new[:, :, 0]))
    x = base.context.pixel_features(bands, [torch.from_numpy(np.ascontiguousarray(new[:, :, 1 + i]))
                                            for i in range(len(self.windows))]).numpy()
    with torch.inference_mode(False), torch.enable_grad():
        mlp = fit_mlp(x, self.labels.numpy(), self.num_classes, seed=self.seed)
    return Fused(base, mlp, VARIANT["v"]).eval()


ba.ExemplarBank._fit = fit
rows = []
for seed in [int(a) for a in sys.argv[1:]] or (0, 1):
    path = Path(os.environ["BENCH_KEEP_MODELS"]) / f"s2_seed{seed}.pt"
    for v in ("forest", "forest+mlp", "mlp"):
        VARIANT["v"] = v
        bundle = carl_geo.load_bundle(path)
        base_w = bundle.model.carl_weight
        for cw in (base_w,):
            for label, bands in bp.S2_SUBSETS.items():
                bundle.model.carl_weight = cw  # the adapters stay cached per band set
                t = time.perf_counter()
                predict_raster(bundle, spec["image"], work / "map.tif", bands=bands, overwrite=True)
                pred, _ = read_class_map(work / "map.tif")
                names = list(bundle.class_names)
                s = bp.score(pred, names, spec["ref"], spec["ref_names"], names)
                row = {"seed": seed, "variant": v, "carl_weight": round(cw, 3), "bands": label, "miou": s["miou"],
                       "oa": s["oa"], "s": round(time.perf_counter() - t, 1)}
                rows.append(row)
                print(json.dumps(row), flush=True)
json.dump(rows, open(work / ("rows_" + "_".join(sys.argv[1:]) + ".json"), "w"), indent=1)
