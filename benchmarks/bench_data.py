"""Data pipeline vs model: samples/s of 13-band 128x128 chips read from a GeoTIFF through
:class:`carl_geo.datasets.SpectralRaster` + torchgeo's RandomPatchSampler, beside the CARL
forward and training step (tiny config) and the published forward on the same batches.
Writes ``bench_data.json`` and ``bench_data.md`` under ``--out``.

    python benchmarks/bench_data.py --size 2048 --batches 20 --workers 0,2
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio
import torch
from rasterio.transform import from_origin
from torch.utils.data import DataLoader
from torchgeo.datasets import stack_samples
from torchgeo.samplers import RandomPatchSampler

import carl_geo
from carl_geo.datasets import SpectralRaster
from carl_geo.transforms import standardize_image


def write_scene(path: Path, size: int) -> None:
    rng = np.random.default_rng(0)
    with rasterio.open(path, "w", driver="GTiff", width=size, height=size, count=13, dtype="uint16",
                       crs="EPSG:32632", transform=from_origin(500000, 5300000, 10, 10), tiled=True,
                       blockxsize=256, blockysize=256, compress="deflate") as dst:
        for row in range(0, size, 256):
            h = min(256, size - row)
            block = rng.integers(0, 10000, (13, h, size), dtype=np.uint16)
            dst.write(block, window=rasterio.windows.Window(0, row, size, h))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=2048)
    p.add_argument("--chip", type=int, default=128)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--batches", type=int, default=20)
    p.add_argument("--workers", default="0,2")
    p.add_argument("--published", action="store_true", help="also time the published config's forward")
    p.add_argument("--out", default="benchmarks/results")
    args = p.parse_args()
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "scene.tif"
        write_scene(path, args.size)
        ds = SpectralRaster(path, sensor="sentinel2_l1c")
        model = carl_geo.CARL(carl_geo.tiny_config()).eval()
        for workers in (int(w) for w in args.workers.split(",")):
            sampler = RandomPatchSampler(ds, size=args.chip, length=args.batch * args.batches)
            loader = DataLoader(ds, sampler=sampler, batch_size=args.batch, num_workers=workers,
                                collate_fn=stack_samples)
            start, n = time.perf_counter(), 0
            for batch in loader:
                n += batch["image"].shape[0]
            rows.append({"what": f"data pipeline, {workers} DataLoader workers",
                         "samples_per_s": n / (time.perf_counter() - start)})
            print(f"{rows[-1]['what']}: {rows[-1]['samples_per_s']:7.1f} samples/s")
        x = standardize_image(batch["image"].float())
        wl = batch["wavelengths"]
        rows.append({"what": f"CARL tiny forward (fp32, batch {args.batch})", "samples_per_s": _rate(model, x, wl)})
        print(f"{rows[-1]['what']}: {rows[-1]['samples_per_s']:7.1f} samples/s")
        rows.append({"what": f"CARL tiny training step (fp32, batch {args.batch}, fwd+bwd+AdamW)",
                     "samples_per_s": _train_rate(model, x, wl)})
        print(f"{rows[-1]['what']}: {rows[-1]['samples_per_s']:7.1f} samples/s")
        if args.published:
            big = carl_geo.CARL(carl_geo.published_config()).eval()
            rows.append({"what": "CARL published forward (fp32, batch 2)",
                         "samples_per_s": _rate(big, x[:2], wl[:2], reps=2)})
            print(f"{rows[-1]['what']}: {rows[-1]['samples_per_s']:7.1f} samples/s")
    meta = {"chip": args.chip, "bands": 13, "scene": args.size, "torch": torch.__version__,
            "threads": torch.get_num_threads(), "machine": platform.processor() or platform.machine()}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench_data.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    lines = [f"13-band {args.chip}x{args.chip} chips from a {args.size}^2 uint16 GeoTIFF, torch "
             f"{torch.__version__}, {meta['threads']} threads", "", "| what | samples/s |", "|---|---:|"]
    lines += [f"| {r['what']} | {r['samples_per_s']:.1f} |" for r in rows]
    (out / "bench_data.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {out}/bench_data.{{json,md}}")


def _rate(model: torch.nn.Module, x: torch.Tensor, wl: torch.Tensor, reps: int = 3) -> float:
    """Forward samples/s (one warm-up call)."""
    with torch.inference_mode():
        model(x, wl)
        start = time.perf_counter()
        for _ in range(reps):
            model(x, wl)
    return reps * x.shape[0] / (time.perf_counter() - start)


def _train_rate(model: torch.nn.Module, x: torch.Tensor, wl: torch.Tensor, reps: int = 3) -> float:
    """Training samples/s: forward, mean square of the spatial features as a stand-in loss, backward, AdamW."""
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    start = 0.0
    for i in range(reps + 1):
        if i == 1:
            start = time.perf_counter()
        out = model(x, wl)
        loss = out.spatial.float().pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    return reps * x.shape[0] / (time.perf_counter() - start)


if __name__ == "__main__":
    main()
