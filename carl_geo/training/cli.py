"""``carl-geo train``: train a land-cover model from polygons drawn on a raster.

Example::

    carl-geo train --raster scene.tif --labels polygons.gpkg --label-field class \\
        --sensor landsat7_etm --epochs 30 --out landcover.pt

Prints a progress bar, the validation report (held-out polygons) and writes
``landcover.pt`` plus ``landcover_confusion.png`` beside it.
"""

from __future__ import annotations

import argparse
from typing import Any


def _band(value: str) -> int | str:
    return int(value) if value.strip().isdigit() else value.strip()


def _floats(value: str) -> list[float]:
    try:
        return [float(v) for v in value.replace(",", " ").split()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"wavelengths must be numbers in µm separated by commas, got {value!r}") from None


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``train`` sub-command."""
    p = subparsers.add_parser(
        "train", help="train a land-cover classifier from polygons on a raster",
        description="Train a CARL segmentation model from labelled polygons (any OGR vector file, any CRS) "
                    "on one raster; writes a model file for `carl-geo predict` and a validation report.",
    )
    p.add_argument("--raster", required=True, help="input raster (any band count, with a CRS)")
    p.add_argument("--labels", required=True, help="vector file with the training polygons (GeoPackage, Shapefile, ...)")
    p.add_argument("--label-field", required=True, help="attribute holding each polygon's class")
    p.add_argument("--out", required=True, help="model file to write (e.g. landcover.pt)")
    p.add_argument("--weights", help="pretrained CARL backbone: freeze it and train only the head")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--sensor", help="sensor preset giving the band wavelengths (e.g. sentinel2_l2a, landsat7_etm)")
    g.add_argument("--wavelengths", type=_floats, help="band centre wavelengths in µm, comma separated")
    p.add_argument("--bands", type=_band, nargs="+", help="bands to use: 1-based indexes or names (default all)")
    p.add_argument("--epochs", type=int, help="epochs of 64 chips (default: 15 end to end, 10 with --weights)")
    p.add_argument("--config", default="tiny", choices=("tiny", "published"), help="CARL size (default tiny)")
    p.add_argument("--head", default="progressive", choices=("progressive", "linear"))
    p.add_argument("--chip-size", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--val-fraction", type=float, default=0.25, help="share of each class held out (whole polygons)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda", "mps"))
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing model file and confusion PNG (never the raster, labels or weights)")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from carl_geo.errors import CarlGeoError
    from carl_geo.training.outputs import check_training_paths

    check_training_paths(args.raster, args.labels, args.out, args.weights, overwrite=args.overwrite)

    from carl_geo.progress_bar import ProgressBar
    from carl_geo.training.metrics import format_report
    from carl_geo.training.polygons import train_from_polygons

    with ProgressBar("training", "step") as bar:
        try:
            result = train_from_polygons(
                args.raster, args.labels, args.label_field, args.out, wavelengths=args.wavelengths,
                sensor=args.sensor, bands=args.bands, weights=args.weights, config=args.config, head=args.head,
                epochs=args.epochs, chip_size=args.chip_size, batch_size=args.batch_size,
                val_fraction=args.val_fraction, seed=args.seed, device=args.device, progress=bar, log=bar.log,
            )
        except CarlGeoError:
            raise
        except ValueError as e:  # train_from_polygons documents ValueError as "bad input or settings"
            raise CarlGeoError(str(e)) from e
    rep = result.report
    print(f"{rep['evaluated_on']} report ({rep['n_val_pixels']} held-out pixels, "
          f"{rep['n_train_pixels']} training pixels, {rep['seconds']:.0f} s):")
    print(format_report({**rep, "n_pixels": rep["n_val_pixels"] or rep["n_train_pixels"]}))
    print(f"model: {result.model_path}")
    bundle = result.bundle
    if bundle.class_values is not None:
        print("classes keep their codes in predicted rasters: " + ", ".join(str(v) for v in bundle.class_values))
    else:
        print("class values in predicted rasters: "
              + ", ".join(f"{i} = {n}" for i, n in enumerate(bundle.class_names)))
    if result.confusion_png:
        print(f"confusion matrix: {result.confusion_png}")
    return 0
