"""Data pipeline vs model: samples/s of 13-band 128x128 chips read from a GeoTIFF through
:class:`carl_geo.datasets.SpectralRaster` + torchgeo's RandomGeoSampler, beside the CARL
forward (tiny config) on the same batches.

    python benchmarks/bench_data.py --size 2048 --batches 20 --workers 0,2
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio
import torch
from rasterio.transform import from_origin
from torch.utils.data import DataLoader
from torchgeo.datasets import stack_samples
from torchgeo.samplers import RandomGeoSampler

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
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "scene.tif"
        write_scene(path, args.size)
        ds = SpectralRaster(path, sensor="sentinel2_l1c")
        model = carl_geo.CARL(carl_geo.tiny_config()).eval()
        for workers in (int(w) for w in args.workers.split(",")):
            sampler = RandomGeoSampler(ds, size=args.chip, length=args.batch * args.batches)
            loader = DataLoader(ds, sampler=sampler, batch_size=args.batch, num_workers=workers,
                                collate_fn=stack_samples)
            start, n = time.perf_counter(), 0
            for batch in loader:
                n += batch["image"].shape[0]
            data_rate = n / (time.perf_counter() - start)
            print(f"data pipeline, {workers} workers: {data_rate:7.1f} samples/s "
                  f"({args.chip}x{args.chip}, 13 bands, from a {args.size}^2 GeoTIFF)")
        x = standardize_image(batch["image"].float())
        wl = batch["wavelengths"]
        with torch.inference_mode():
            model(x, wl)
            start = time.perf_counter()
            for _ in range(3):
                model(x, wl)
            model_rate = 3 * x.shape[0] / (time.perf_counter() - start)
        print(f"CARL tiny forward (fp32, batch {args.batch}): {model_rate:7.1f} samples/s")


if __name__ == "__main__":
    main()
