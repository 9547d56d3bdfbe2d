"""What a training run writes, and the check that it never replaces a file the run reads.

:func:`train_from_polygons <carl_geo.polygon_training.train_from_polygons>` writes the model file ``out``
and a confusion-matrix PNG beside it (:func:`confusion_png_path`). :func:`check_training_paths`
refuses, before any pixel is read, an ``out`` (or PNG) that is the raster (also through a symlink,
a file a VRT raster reads at any depth, or the archive of a ``/vsizip/`` raster), a file the labels
are read from (a Shapefile's ``.dbf`` / ``.shx`` / ..., the CSV an OGR VRT names, every layer of a
folder given as the labels, the archive of ``/vsizip/`` labels), or the weights file; and an input
that is a FIFO or a device (:func:`~carl_geo.io.output_paths.check_input_file`).
"""

from __future__ import annotations

import os
from pathlib import Path

from carl_geo.io.output_paths import VECTOR_COMPANIONS, check_outputs, check_suffix, dataset_files, reads_of

#: VECTOR_COMPANIONS moved to carl_geo.io.output_paths; importing it from here keeps working.
__all__ = ["VECTOR_COMPANIONS", "check_training_paths", "confusion_png_path", "vector_files"]


def confusion_png_path(out: str | os.PathLike[str]) -> Path:
    """``<stem>_confusion.png`` beside the model file ``out``."""
    out = Path(out)
    return out.with_name(out.stem + "_confusion.png")


def vector_files(path: str | os.PathLike[str]) -> list[Path]:
    """The label file and every file OGR reads for it (:func:`~carl_geo.io.output_paths.dataset_files`):
    a Shapefile's ``.dbf``, ``.shx``, ...; the sources of an OGR VRT, at any depth; every layer of a
    folder; the archive of a ``/vsizip/`` path."""
    return dataset_files(path)


def check_training_paths(raster: str | os.PathLike[str], labels: str | os.PathLike[str],
                         out: str | os.PathLike[str], weights: str | os.PathLike[str] | None = None, *,
                         overwrite: bool = True) -> None:
    """Refuse a model file ``out`` (or its confusion PNG) that is a file the run reads, that exists
    and is not a regular file, or (with ``overwrite=False``) that exists; and one named like a map, a layer or a
    picture (:func:`~carl_geo.io.output_paths.check_suffix`: ``landcover.tif`` given where the model goes).

    Raises:
        OutputPathError: naming the output and the file it would destroy.
        InputError: the raster, labels or weights (or a file they read) is a FIFO or a device.
    """
    check_outputs([("model file", out), ("confusion matrix PNG", confusion_png_path(out))],
                  reads_of([("raster", raster)], [("label file", labels), ("weights file", weights)]),
                  overwrite=overwrite)
    check_suffix(out, "a model file", ("GeoTIFF", "raster of another format", "vector file", "picture"),
                 f"name it e.g. {Path(out).stem}.pt, then map a raster with it (carl-geo predict RASTER MAP.tif "
                 f"--model {Path(out).stem}.pt, or QGIS's 'CARL segment raster')")
