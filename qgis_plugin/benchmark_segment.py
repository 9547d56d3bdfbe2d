"""Time "CARL segment raster" in a headless QGIS on a synthetic 13-band raster (default 2048 x 2048,
Sentinel-2 L1C wavelengths) with a tiny random-weight CARL model, on the CPU.

Run with the QGIS venv (``scripts/setup_qgis_env.sh``)::

    QT_QPA_PLATFORM=offscreen .venv-qgis/bin/python qgis_plugin/benchmark_segment.py [--size 2048]

The plugin is loaded from ``qgis_plugin/`` (source tree). Prints one line per run and a summary.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=2048, help="raster width = height (pixels)")
    parser.add_argument("--tile-size", type=int, default=256)
    parser.add_argument("--overlap", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    args = parser.parse_args(argv)
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

    import carl_geo
    import numpy as np
    import rasterio
    import torch
    from affine import Affine

    if args.threads:
        torch.set_num_threads(args.threads)
    from qgis.core import QgsApplication, QgsProcessingFeedback

    work = Path(tempfile.mkdtemp(prefix="carl_bench_"))
    app = QgsApplication([], False, str(work / "profile"))
    QgsApplication.setPrefixPath("/usr", True)
    app.initQgis()
    sys.path += [QgsApplication.pkgDataPath() + "/python/plugins", str(HERE)]
    from processing.core.Processing import Processing

    Processing.initialize()
    import processing
    from carl_qgis.provider import CarlProvider

    provider = CarlProvider()
    QgsApplication.processingRegistry().addProvider(provider)

    sensor = carl_geo.get_sensor("sentinel2_l1c")
    n = args.size
    rng = np.random.default_rng(0)
    src = work / f"s2_{n}.tif"
    with rasterio.open(src, "w", driver="GTiff", width=n, height=n, count=sensor.num_bands, dtype="uint16",
                       crs="EPSG:32633", transform=Affine(10.0, 0, 500000, 0, -10.0, 4100000), tiled=True,
                       blockxsize=256, blockysize=256) as ds:
        for b in range(sensor.num_bands):
            ds.write(rng.integers(200, 4000, (n, n), dtype=np.uint16), b + 1)
    torch.manual_seed(0)
    model = carl_geo.CARLSegmenter(carl_geo.CARL(carl_geo.tiny_config()), 5).eval()
    bundle_path = carl_geo.save_bundle(carl_geo.make_bundle(model, wavelengths=sensor.wavelengths,
                                                            band_names=sensor.band_names, sensor=sensor.name),
                                       work / "tiny.pt")
    out = work / "classes.tif"
    load0 = os.getloadavg()[0]
    t0, c0 = time.perf_counter(), time.process_time()
    processing.run("carl:segmentraster", {
        "INPUT": str(src), "MODEL": str(bundle_path), "SENSOR": "sentinel2_l1c", "TILE_SIZE": args.tile_size,
        "OVERLAP": args.overlap, "BATCH_SIZE": args.batch_size, "DEVICE": "cpu", "OUTPUT_TYPE": "classes",
        "OUTPUT": str(out)}, feedback=QgsProcessingFeedback())
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    with rasterio.open(out) as ds:
        assert (ds.width, ds.height) == (n, n)
    print(f"CARL segment raster: {n}x{n} px, {sensor.num_bands} bands, tiny model, tile {args.tile_size}, "
          f"overlap {args.overlap}, batch {args.batch_size}, {torch.get_num_threads()} torch threads: "
          f"{seconds:.1f} s wall, {cpu:.1f} s CPU ({n * n / seconds / 1e6:.3f} Mpx/s); load average before/after "
          f"{load0:.1f}/{os.getloadavg()[0]:.1f}")
    app.exitQgis()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
