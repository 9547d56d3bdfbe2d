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


def _floats(text: str) -> list[float]:
    try:
        return [float(v) for v in text.replace(" ", "").split(",") if v]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers (µm), got {text!r}") from None


def _bands(text: str) -> list[int | str]:
    return [int(v) if v.isdigit() else v for v in (p.strip() for p in text.split(",")) if v]


def _normalization(text: str) -> Any:
    if text in ("scene", "model"):
        return None if text == "model" else "scene"
    values = _floats(text)
    if len(values) != 2:
        raise argparse.ArgumentTypeError(f"expected 'model', 'scene' or MEAN,STD, got {text!r}")
    return tuple(values)


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``predict`` sub-command."""
    p = subparsers.add_parser("predict", help="predict a raster tile by tile into a GeoTIFF",
                              description=DESCRIPTION, epilog=EPILOG,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("src", metavar="SRC", help="input raster (GeoTIFF, VRT, ENVI, netcdf:file.nc:var, ...)")
    p.add_argument("dst", metavar="DST", help="output GeoTIFF")
    p.add_argument("--model", "-m", required=True, metavar="MODEL_FILE",
                   help="CARL model file (.pt bundle from carl-geo training, or backbone weights for embeddings)")
    p.add_argument("--output", "-o", choices=("classes", "probabilities", "embeddings"), default=None,
                   help="what to write (default: classes for a segmentation model, embeddings otherwise)")
    g = p.add_argument_group("bands and wavelengths")
    g.add_argument("--wavelengths", type=_floats, metavar="UM,UM,...",
                   help="centre wavelength of each (selected) band in micrometres, e.g. 0.49,0.56,0.665")
    g.add_argument("--sensor", metavar="NAME", help="sensor preset, e.g. sentinel2_l2a, landsat8_oli, enmap, rgb")
    g.add_argument("--bands", type=_bands, metavar="B,B,...",
                   help="bands to read: 1-based numbers (1,2,3) or names (B02,B03,B04)")
    g.add_argument("--nodata", type=float, help="input nodata value (default: the file's)")
    g.add_argument("--normalization", type=_normalization, default=None, metavar="model|scene|MEAN,STD",
                   help="input normalisation (default: the model's; scene = mean/std sampled from the raster)")
    t = p.add_argument_group("tiling and device")
    # default None: carl_geo.inference.tiling.default_tiling(the model's patch size)
    t.add_argument("--tile-size", type=int, default=None, metavar="PX",
                   help="largest tile side in pixels (default: 32 model patches, 256 for CARL's patch 8)")
    t.add_argument("--overlap", type=int, default=None, metavar="PX",
                   help="pixels shared by neighbouring tiles, < tile size / 2 (default: 2 model patches, 16 at patch 8)")
    t.add_argument("--batch-size", type=_batch_size, default=4, metavar="N|auto",
                   help="tiles per model call, or auto (sized to the GPU's free memory; default 4)")
    t.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps (default auto)")
    t.add_argument("--precision", choices=("fp32", "int8", "bf16", "fp16"), default="fp32",
                   help="fp32 (default); int8: int8 weights on the CPU, 2-3x faster (needs pip install "
                        "'carl-geo[int8]'); bf16/fp16: autocast on a GPU")
    t.add_argument("--compile", action="store_true",
                   help="torch.compile the model for this run (worth it on a GPU for large rasters)")
    o = p.add_argument_group("output file")
    o.add_argument("--probability-dtype", choices=("float32", "uint8"), default="float32",
                   help="float32, or uint8 scaled 0..254 (default float32)")
    o.add_argument("--embedding-dtype", choices=("float32", "float16"), default="float32")
    o.add_argument("--cog", action="store_true", help="write a Cloud Optimized GeoTIFF (with overviews)")
    o.add_argument("--overviews", action="store_true", help="add internal overviews")
    o.add_argument("--quicklook", metavar="PNG", help="also write a PNG: input in false colour | map with legend")
    o.add_argument("--overwrite", action="store_true",
                   help="replace existing output files (never a file the run reads: input, its VRT sources, model)")
    o.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    p.set_defaults(func=run)
    return p


def _batch_size(text: str) -> int | str:
    if text == "auto":
        return text
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer or 'auto', got {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {n}")
    return n


def run(args: argparse.Namespace) -> int:
    from carl_geo.inference.tiling import check_tiling
    from carl_geo.io.output_paths import check_outputs, reads_of

    if args.tile_size is not None and args.overlap is not None:
        check_tiling(args.tile_size, args.overlap)  # cheap checks before the model loads
    model_path = Path(args.model)
    if not model_path.is_file():
        raise FileNotFoundError(f"model file not found: {model_path}")
    check_outputs([("output", args.dst), ("quick look PNG", args.quicklook)],
                  reads_of([("input raster", args.src)], [("model file", model_path)]), overwrite=args.overwrite)

    from carl_geo.inference.predictor import predict_raster
    from carl_geo.models.bundle import load_bundle
    from carl_geo.progress_bar import ProgressBar

    bundle = load_bundle(model_path)
    output = args.output or ("classes" if bundle.task == "segmentation" else "embeddings")

    with ProgressBar("predict", "tile", file=sys.stderr, dynamic_ncols=True) as bar:
        result = predict_raster(
            bundle, args.src, args.dst, output=output, wavelengths=args.wavelengths, sensor=args.sensor,
            bands=args.bands, tile_size=args.tile_size, overlap=args.overlap, batch_size=args.batch_size,
            normalization=args.normalization, device=args.device, precision=args.precision, compile=args.compile,
            probability_dtype=args.probability_dtype, embedding_dtype=args.embedding_dtype, nodata=args.nodata,
            cog=args.cog, overviews=args.overviews, progress=None if args.quiet else bar, overwrite=args.overwrite)
    print(f"wrote {result.path}: {output}, {result.count} band(s), {result.width} x {result.height} px, "
          f"{result.crs or 'no CRS'}; {result.tiles} tiles in {result.seconds:.1f} s on {result.device}")
    if output == "classes":
        values = bundle.class_values if bundle.class_values is not None else range(len(bundle.class_names))
        print("class values: " + ", ".join(f"{v} = {n}" for v, n in zip(values, bundle.class_names)))
    if args.quicklook:
        from carl_geo.inference.quicklook import write_quicklook

        names = bundle.class_names if output != "embeddings" else None
        png = write_quicklook(args.src, result.path, args.quicklook, names, bundle.colors if names else None,
                              wavelengths=None if args.bands else _all_band_wavelengths(args, result),
                              class_values=bundle.class_values if output == "classes" else None)
        print(f"wrote {png}")
    return 0


def _all_band_wavelengths(args: argparse.Namespace, result: Any) -> list[float] | None:
    """Wavelengths of all input bands when every band was read (for the quick look's band choice)."""
    n = len(result.band_indexes)
    return list(result.wavelengths) if result.band_indexes == list(range(1, n + 1)) else None
