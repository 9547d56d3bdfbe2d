"""``carl-geo train``: train a land-cover model from polygons drawn on a raster.

Example::

    carl-geo train --raster scene.tif --labels polygons.gpkg --label-field class \\
        --sensor landsat7_etm --max-steps 600 --out landcover.pt

Prints a progress bar, the validation report (held-out polygons) and writes
``landcover.pt`` plus ``landcover_confusion.png`` beside it.
"""

from __future__ import annotations

import argparse
from typing import Any


def _band_subset(value: str) -> tuple[int, int] | None | str:
    v = value.strip().lower()
    if v == "auto":
        return "auto"
    if v in ("none", "off", "all"):
        return None
    try:
        parts = [int(x) for x in v.replace("-", ",").split(",") if x.strip()]
    except ValueError:
        parts = []
    if len(parts) == 1:
        parts = parts * 2
    if len(parts) != 2 or not 1 <= parts[0] <= parts[1]:
        raise argparse.ArgumentTypeError(f"--band-subset takes MIN,MAX band counts (e.g. 3,24), 'auto' or 'none', got {value!r}")
    return parts[0], parts[1]


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``train`` sub-command."""
    from carl_geo.cli_args import add_bands_argument, positive_int, wavelength_list
    from carl_geo.inference.settings import DEVICES
    from carl_geo.models.names import CONFIG_NAMES, HEAD_NAMES, TRAINING_MODE_NAMES
    from carl_geo.polygon_training import recipe as rc

    p = subparsers.add_parser(
        "train", help="train a land-cover classifier from polygons on a raster",
        description="Train a CARL segmentation model from labelled polygons (any OGR vector file, any CRS) "
                    "on one raster; writes a model file for `carl-geo predict` and a validation report. "
                    "Chip, batch and patch size, band subsets and the step budget adapt to the scene "
                    "unless given.",
    )
    p.add_argument("--raster", required=True, help="input raster (any band count, with a CRS)")
    p.add_argument("--labels", required=True, help="vector file with the training polygons (GeoPackage, Shapefile, ...)")
    p.add_argument("--label-field", required=True, help="attribute holding each polygon's class")
    p.add_argument("--out", required=True, help="model file to write (e.g. landcover.pt)")
    p.add_argument("--weights", help="pretrained CARL backbone: freeze it and train only the head")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--sensor", help="sensor preset giving the band wavelengths (e.g. sentinel2_l2a, landsat7_etm)")
    g.add_argument("--wavelengths", type=wavelength_list, metavar="UM,UM,...",
                   help="band centre wavelengths in µm, comma separated (nanometres are converted)")
    add_bands_argument(p, one_value=False)
    p.add_argument("--mode", choices=TRAINING_MODE_NAMES, default="auto",
                   help="chips (spatial context) or pixels (each pixel from its own spectrum); auto: pixels for "
                        f"rasters with more than {rc.PIXEL_MIN_BANDS} bands, small polygons and at most "
                        f"{rc.PIXEL_MAX_SCENE / 1e6:g} Mpx, else chips")
    area = f"{rc.CPU_MINUTES_AREA / 1e6:g} Mpx"
    p.add_argument("--max-steps", type=positive_int, help=f"optimiser steps at most (default {rc.DEFAULT_STEPS}, "
                   f"{rc.PIXEL_STEPS} in pixels mode; more on a CPU for labelled areas above {area}; the model kept is "
                   "the average of the last quarter's checkpoints)")
    p.add_argument("--max-minutes", type=float, help="wall-time budget of the training loop (default on a CPU "
                   f"without --max-steps: {rc.CPU_MINUTES:g}, growing with the labelled area above {area} up to "
                   f"{rc.CPU_MAX_MINUTES:g}; {rc.CPU_MINUTES_PIXELS:g} in pixels mode; the learning-rate schedule "
                   "follows the clock when time runs out first)")
    p.add_argument("--band-subset", type=_band_subset, default="auto", metavar="MIN,MAX",
                   help="random subsets of MIN..MAX bands per training chip, or 'none' (default: 3..all bands when the "
                        "raster has 4-24 bands; makes the model work with fewer bands; with more than 24 bands, "
                        "random binning into MIN..MAX broad bands)")
    p.add_argument("--full-band-share", type=float, default=rc.TrainingRecipe.full_band_share, metavar="SHARE",
                   help="share of the steps that see all bands when band subsets are on "
                        f"(default {rc.TrainingRecipe.full_band_share:g})")
    p.add_argument("--normalization", choices=rc.NORMALIZATIONS, default="scene",
                   help="scalar mean/std of the whole scene (default, stored in the model) or of each chip/tile")
    p.add_argument("--config", default="tiny", choices=CONFIG_NAMES, help="CARL size (default tiny)")
    p.add_argument("--head", default="progressive", choices=HEAD_NAMES)
    p.add_argument("--patch-size", type=positive_int, help="backbone patch size in pixels (default: 2 or 4 from "
                   "the polygon sizes)")
    p.add_argument("--chip-size", type=positive_int, help="training chip side in pixels (default: 16 patches)")
    p.add_argument("--batch-size", type=positive_int, help="chips per step (default: from the band count and chip size)")
    p.add_argument("--lr", type=float, default=1e-3, help="peak learning rate (default 1e-3)")
    p.add_argument("--val-fraction", type=float, default=0.25,
                   help="share of each class held out (whole polygons) for the report; 0 trains on every polygon "
                        "(the report then scores the training polygons)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", choices=DEVICES)
    p.add_argument("--epochs", type=positive_int, help=argparse.SUPPRESS)  # deprecated: use --max-steps
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing model file and confusion PNG (never the raster, labels or weights)")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    import sys

    from carl_geo.polygon_training.outputs import check_training_paths

    check_training_paths(args.raster, args.labels, args.out, args.weights, overwrite=args.overwrite)

    from carl_geo.progress_bar import ProgressBar
    from carl_geo.polygon_training.metrics import format_report
    from carl_geo.polygon_training.polygons import LEGACY_CHIPS_PER_EPOCH, train_from_polygons

    settings = dict(mode=args.mode, band_subset=args.band_subset, normalization=args.normalization, config=args.config,
                    head=args.head, patch_size=args.patch_size, chip_size=args.chip_size,
                    batch_size=args.batch_size, lr=args.lr, val_fraction=args.val_fraction, seed=args.seed,
                    max_steps=args.max_steps, max_minutes=args.max_minutes, full_band_share=args.full_band_share)
    if args.epochs is not None and args.max_steps is None:
        settings["max_steps"] = max(1, round(args.epochs * LEGACY_CHIPS_PER_EPOCH / (args.batch_size or 8)))
        print(f"carl-geo train: --epochs is deprecated, use --max-steps (now {settings['max_steps']})", file=sys.stderr)
    with ProgressBar("training", "step") as bar:
        result = train_from_polygons(
            args.raster, args.labels, args.label_field, args.out, wavelengths=args.wavelengths,
            sensor=args.sensor, bands=args.bands, weights=args.weights, device=args.device, progress=bar,
            log=bar.log, **settings,
        )
    rep = result.report
    print(f"{rep['evaluated_on']} report ({rep['n_val_pixels']} held-out pixels, "
          f"{rep['n_train_pixels']} training pixels, {rep['steps']} steps, {rep['seconds']:.0f} s):")
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
