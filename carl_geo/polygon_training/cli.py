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


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``train`` sub-command."""
    from carl_geo.cli_args import add_bands_argument, positive_int, wavelength_list
    from carl_geo.inference.settings import DEVICES
    from carl_geo.polygon_training import recipe as rc
    from carl_geo.settings_options import add_options

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
    p.add_argument("--nodata", type=float, metavar="VALUE",
                   help="the raster's nodata value in place of the file's (e.g. 0 for fill it does not declare)")
    add_options(rc.TrainingRecipe, {None: p.add_argument_group("training recipe (default: derived from the scene)")})
    p.add_argument("--device", default="auto", choices=DEVICES)
    p.add_argument("--epochs", type=positive_int, help=argparse.SUPPRESS)  # deprecated: use --max-steps
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing model file and confusion PNG (never the raster, labels or weights)")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from carl_geo.cli_runtime import safe_print as print  # noqa: A001 (control characters shown as \\xNN)

    import sys

    from carl_geo.polygon_training.outputs import check_training_paths

    check_training_paths(args.raster, args.labels, args.out, args.weights, overwrite=args.overwrite)

    from carl_geo.progress_bar import ProgressBar
    from carl_geo.polygon_training.metrics import format_report
    from carl_geo.polygon_training.polygons import train_from_polygons
    from carl_geo.polygon_training.recipe import steps_for_epochs

    from carl_geo.polygon_training.recipe import TrainingRecipe
    from carl_geo.settings_options import from_options

    recipe = from_options(TrainingRecipe, args)
    if args.epochs is not None and args.max_steps is None:
        recipe = recipe.replace(max_steps=steps_for_epochs(args.epochs, args.batch_size))
        print(f"carl-geo train: --epochs is deprecated, use --max-steps (now {recipe.max_steps})", file=sys.stderr)
    # share of the run, not steps: under a time budget the bar follows the clock (the log lines count the steps)
    with ProgressBar("training", "step", bar_format="{l_bar}{bar}| {elapsed}<{remaining}") as bar:
        result = train_from_polygons(
            args.raster, args.labels, args.label_field, args.out, wavelengths=args.wavelengths,
            sensor=args.sensor, bands=args.bands, nodata=args.nodata, weights=args.weights, device=args.device,
            progress=bar, log=bar.log, recipe=recipe,
        )
    rep = result.report
    print(f"{rep['evaluated_on']} report ({rep['n_val_pixels']} held-out pixels, "
          f"{rep['n_train_pixels']} training pixels, {rep['steps']} steps, {rep['seconds']:.0f} s):")
    print(format_report({**rep, "n_pixels": rep["n_val_pixels"] or rep["n_train_pixels"]}))
    if rep.get("candidates"):
        from carl_geo.polygon_training.candidates import evidence_table

        print("candidates (held-out polygons; the forests need the training bands, the CARL part maps any bands):")
        print("\n".join("  " + line for line in evidence_table(rep["candidates"], rep["kept"])))
    print(f"kept: {rep.get('kept', 'carl')}: {rep.get('kept_reason', '')}")
    if rep.get("warning"):
        print(f"warning: {rep['warning']}")
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
