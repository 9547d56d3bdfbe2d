"""``carl-geo predict SRC DST --model MODEL``: the tiled raster predictor on the command line."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

DESCRIPTION = """\
Predict a whole raster with a CARL model file and write a GeoTIFF on the input's grid
(same CRS, transform and size): a class map with colour table and class names, per-class
probabilities, or per-pixel embeddings. The raster is processed in overlapping tiles
(blended without seams) and streamed in row strips, so rasters of any size fit in memory.

Band wavelengths (µm) are taken from, in order: --wavelengths, --sensor, the file's metadata
(GDAL CENTRAL_WAVELENGTH_UM, ENVI wavelength, band names such as B04), the model file."""

EPILOG = """\
examples:
  carl-geo predict scene.tif landcover.tif --model model.pt --sensor sentinel2_l2a
  carl-geo predict scene.tif probs.tif --model model.pt --output probabilities --wavelengths 0.49,0.56,0.665,0.842
  carl-geo predict enmap.tif feats.tif --model carl.pt --output embeddings --embedding-dtype float16 --cog
  carl-geo predict scene.tif map.tif --model model.pt --bands B02,B03,B04,B08 --sensor s2 --quicklook map.png"""


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``predict`` sub-command (the options after ``--model`` come from the fields of
    :class:`~carl_geo.inference.settings.PredictSettings`)."""
    from carl_geo.cli_args import add_bands_argument, wavelength_list
    from carl_geo.inference.settings import GROUPS, add_arguments

    p = subparsers.add_parser("predict", help="predict a raster tile by tile into a GeoTIFF",
                              description=DESCRIPTION, epilog=EPILOG,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("src", metavar="SRC", nargs="?", help="input raster (GeoTIFF, VRT, ENVI, netcdf:file.nc:var, ...)")
    p.add_argument("dst", metavar="DST", nargs="?", help="output GeoTIFF")
    p.add_argument("--raster", metavar="SRC", help="the input raster, named as in carl-geo train (instead of SRC)")
    p.add_argument("--out", metavar="DST", help="the output GeoTIFF, named as in carl-geo train (instead of DST)")
    p.add_argument("--model", "-m", required=True, metavar="MODEL_FILE",
                   help="CARL model file (.pt bundle from carl-geo training, or backbone weights for embeddings)")
    groups: dict[str | None, Any] = {None: p}
    for title in GROUPS[1:]:
        groups[title] = p.add_argument_group(title)
    g = groups["bands and wavelengths"]
    g.add_argument("--wavelengths", type=wavelength_list, metavar="UM,UM,...",
                   help="centre wavelength of each (selected) band in micrometres, e.g. 0.49,0.56,0.665 "
                        "(nanometres are converted)")
    g.add_argument("--sensor", metavar="NAME", help="sensor preset, e.g. sentinel2_l2a, landsat8_oli, enmap, rgb")
    add_bands_argument(g, one_value=True)
    add_arguments(groups)
    o = groups["output file"]
    o.add_argument("--quicklook", metavar="PNG", help="also write a PNG: input in false colour | map with legend")
    o.add_argument("--overwrite", action="store_true",
                   help="replace existing output files (never a file the run reads: input, its VRT sources, model)")
    o.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from carl_geo.cli_runtime import safe_print as print  # noqa: A001 (control characters shown as \\xNN)

    from carl_geo.inference.settings import from_arguments
    from carl_geo.io.output_paths import check_outputs, reads_of

    args.src = _one_path(args.src, args.raster, "input raster", "SRC", "--raster")
    args.dst = _one_path(args.dst, args.out, "output GeoTIFF", "DST", "--out")
    settings = from_arguments(args)  # cheap checks before the model loads
    if args.quicklook:
        from carl_geo.inference.quicklook import check_quicklook_path

        check_quicklook_path(args.quicklook)
    model_path = Path(args.model)
    if not model_path.is_file():
        raise FileNotFoundError(f"model file not found: {model_path}")
    check_outputs([("output", args.dst), ("quick look PNG", args.quicklook)],
                  reads_of([("input raster", args.src)], [("model file", model_path)]), overwrite=args.overwrite)

    from carl_geo.inference.outputs import default_output, output_kind
    from carl_geo.inference.predictor import predict_raster
    from carl_geo.models.bundle import load_bundle
    from carl_geo.progress_bar import ProgressBar

    bundle = load_bundle(model_path)
    output = args.output or default_output(bundle.task)
    kind = output_kind(output)

    with ProgressBar("predict", "tile", file=sys.stderr, dynamic_ncols=True) as bar:
        result = predict_raster(
            bundle, args.src, args.dst, wavelengths=args.wavelengths, sensor=args.sensor, bands=args.bands,
            settings=settings.replace(output=output), progress=None if args.quiet else bar, overwrite=args.overwrite)
    print(f"wrote {result.path}: {output}, {result.count} band(s), {result.width} x {result.height} px, "
          f"{result.georeferencing or 'no CRS'}; {result.tiles} tiles in {result.seconds:.1f} s on {result.device} "
          f"({result.precision})")
    if kind.class_map:
        values = bundle.class_values if bundle.class_values is not None else range(len(bundle.class_names))
        print("class values: " + ", ".join(f"{v} = {n}" for v, n in zip(values, bundle.class_names)))
    if args.quicklook:
        from carl_geo.inference.quicklook import write_quicklook

        names = bundle.class_names if kind.needs_classes else None
        png = write_quicklook(args.src, result.path, args.quicklook, names, bundle.colors if names else None,
                              wavelengths=None if args.bands else _all_band_wavelengths(args, result),
                              class_values=bundle.class_values if kind.class_map else None)
        print(f"wrote {png}")
    return 0


def _one_path(positional: str | None, option: str | None, what: str, name: str, flag: str) -> str:
    """The path given as ``name`` (positional) or as ``flag`` (train's option name): once, not twice."""
    from carl_geo.errors import CarlGeoError

    if positional is not None and option is not None and positional != option:
        raise CarlGeoError(f"two {what}s given ({name} {positional} and {flag} {option}): give one")
    if positional is None and option is None:
        raise CarlGeoError(f"the {what} is missing: carl-geo predict SRC DST --model MODEL_FILE "
                           "(or --raster SRC --out DST)")
    return positional if positional is not None else option  # type: ignore[return-value]


def _all_band_wavelengths(args: argparse.Namespace, result: Any) -> list[float] | None:
    """Wavelengths of all input bands when every band was read (for the quick look's band choice)."""
    n = len(result.band_indexes)
    return list(result.wavelengths) if result.band_indexes == list(range(1, n + 1)) else None
