"""What a training run writes, and the check that it never replaces a file the run reads.

:func:`train_from_polygons <carl_geo.polygon_training.train_from_polygons>` writes the model file ``out``
and a confusion-matrix PNG beside it (:func:`confusion_png_path`). :func:`check_training_paths`
refuses, before any pixel is read, an ``out`` (or PNG) that is the raster (also through a symlink,
or a file a VRT raster reads), the label file (or a Shapefile's ``.dbf`` / ``.shx`` / ...), or the
weights file.
"""

from __future__ import annotations

import os
from pathlib import Path

from carl_geo.io.output_paths import check_outputs, reads_of

#: Files that make up one Shapefile / MapInfo layer besides the one the user names.
VECTOR_COMPANIONS = {".shp": (".shx", ".dbf", ".prj", ".cpg", ".qix", ".sbn", ".sbx", ".qmd"),
                     ".tab": (".dat", ".id", ".map", ".ind"), ".gpkg": ("-wal", "-shm")}


def confusion_png_path(out: str | os.PathLike[str]) -> Path:
    """``<stem>_confusion.png`` beside the model file ``out``."""
    out = Path(out)
    return out.with_name(out.stem + "_confusion.png")


def vector_files(path: str | os.PathLike[str]) -> list[Path]:
    """The label file and its companion files (a Shapefile's ``.dbf``, ``.shx``, ...)."""
    p = Path(path)
    extra = VECTOR_COMPANIONS.get(p.suffix.lower(), ())
    companions = [p.with_suffix(e) if e.startswith(".") else p.with_name(p.name + e) for e in extra]
    return [p, *companions]


def check_training_paths(raster: str | os.PathLike[str], labels: str | os.PathLike[str],
                         out: str | os.PathLike[str], weights: str | os.PathLike[str] | None = None, *,
                         overwrite: bool = True) -> None:
    """Refuse a model file ``out`` (or its confusion PNG) that is a file the run reads, or (with
    ``overwrite=False``) that exists.

    Raises:
        OutputPathError: naming the output and the file it would destroy.
    """
    files = [("label file", f) for f in vector_files(labels)] + [("weights file", weights)]
    check_outputs([("model file", out), ("confusion matrix PNG", confusion_png_path(out))],
                  reads_of([("raster", raster)], files), overwrite=overwrite)
