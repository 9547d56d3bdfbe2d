"""Output-path safety: no run writes over a file it reads, and every file appears atomically.

* :func:`raster_files`: the local files GDAL reads for a raster (the file itself, the sources of a
  VRT, an ENVI header, existing ``.ovr`` / ``.aux.xml`` sidecars), as real paths;
* :func:`check_outputs`: refuses an output that is one of the files the run reads (compared as
  real paths, so symlinks and ``..`` do not get through), that is another output of the same
  run, whose sidecars are read files, whose folder is missing, that is a folder, or that exists
  when ``overwrite`` is False (the command line's default, as GDAL's tools do);
* :func:`atomic_path`: a hidden temporary name beside the target, renamed onto it only when the
  block succeeds and deleted otherwise (Ctrl-C, SIGTERM, disk full), used by every writer of
  carl_geo (GeoTIFFs, model files, PNGs, JSON);
* :func:`replace_sidecars`: after a raster replaced an older one, the old ``.ovr`` / ``.aux.xml`` /
  ``.msk`` go (they would show the previous map in zoomed-out views or override its nodata and
  class names), and the new file's own sidecars move into place.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from carl_geo.errors import OutputPathError, option

#: Sidecar files GDAL reads beside a raster ``x.tif``: ``x.tif.ovr``, ``x.tif.aux.xml``, ``x.tif.msk``.
SIDECAR_SUFFIXES = (".ovr", ".aux.xml", ".msk")

#: ``(what, path)`` pairs, e.g. ``("input raster", "scene.tif")``.
Labelled = Sequence[tuple[str, "str | os.PathLike[str] | None"]]


def real_path(path: str | os.PathLike[str]) -> Path:
    """The absolute path with every symlink and ``..`` resolved (the file itself need not exist)."""
    return Path(os.path.realpath(os.fspath(path)))


def sidecars(path: str | os.PathLike[str]) -> list[Path]:
    """GDAL sidecars of a raster path (see :data:`SIDECAR_SUFFIXES`)."""
    p = Path(path)
    return [p.with_name(p.name + s) for s in SIDECAR_SUFFIXES]


def raster_files(src: str | os.PathLike[str]) -> list[Path]:
    """The local files GDAL reads for raster ``src`` (rasterio's ``files``: the file, a VRT's
    sources, ENVI headers, sidecars); just ``src`` when it is a local file GDAL cannot open, and
    nothing for a GDAL URI that names no local file."""
    import rasterio
    import rasterio.errors

    text = os.fspath(src)
    try:
        with rasterio.open(text) as ds:
            files = list(ds.files or [])
    except (rasterio.errors.RasterioError, OSError, ValueError):
        files = []
    if os.path.exists(text):
        files.append(text)
    return [Path(f) for f in dict.fromkeys(files) if f and not f.startswith("/vsi")]


def check_outputs(outputs: Labelled, reads: Labelled, *, overwrite: bool = True) -> list[Path]:
    """Check every output path of a run before anything is computed.

    Args:
        outputs: ``(what, path)`` of each file the run will write, e.g. ``[("output", dst),
            ("quick look PNG", png)]``; None paths are skipped.
        reads: ``(description, path)`` of each file the run reads, e.g. ``("input raster
            scene.vrt", ...)``; see :func:`reads_of` (input rasters with their VRT sources, model,
            label and weights files).
        overwrite: allow replacing existing outputs (never a read file).

    Returns:
        the output paths as given (as :class:`~pathlib.Path`), in order, without None.

    Raises:
        OutputPathError: naming the output and the file it would replace, or what to do.
        FileNotFoundError: the folder of an output does not exist.
    """
    read_map: dict[Path, str] = {}
    linked: set[Path] = set()  # real paths reached through a symlink or ".."
    for description, p in reads:
        if p is not None:
            real = real_path(p)
            read_map.setdefault(real, description)
            if Path(os.path.abspath(p)) != real:
                linked.add(real)
    seen: dict[Path, str] = {}
    out: list[Path] = []
    for what, p in outputs:
        if p is None:
            continue
        path = Path(p)
        real = real_path(path)
        if real in read_map:
            via = f" (both are {real})" if Path(os.path.abspath(path)) != real or real in linked else ""
            raise OutputPathError(f"the {what} {path} is the {read_map[real]}{via}; the run would destroy it: "
                                  "choose another file name")
        for side in sidecars(real):
            if side in read_map:
                raise OutputPathError(f"writing the {what} {path} would replace {side}, the {read_map[side]}; "
                                      "choose another file name")
        if real in seen:
            raise OutputPathError(f"the {what} and the {seen[real]} are the same file ({path}); "
                                  "give them different names")
        seen[real] = what
        if path.is_dir():
            raise OutputPathError(f"the {what} {path} is a folder; give a file name inside it, "
                                  f"e.g. {path / ('result' + (path.suffix or '.tif'))}")
        if not real.parent.is_dir():
            raise FileNotFoundError(f"the output folder of the {what} ({path.parent}) does not exist; create it first")
        if not overwrite and (path.exists() or path.is_symlink()):
            raise OutputPathError(f"the {what} {path} exists; pass {option('overwrite', python='True')} "
                                  "to replace it, or choose another file name")
        out.append(path)
    return out


def partial_path(path: str | os.PathLike[str], suffix: str | None = None) -> Path:
    """A hidden, unique temporary name beside ``path``: ``.<name>.<pid>.<hex>.partial<suffix>``
    (``suffix`` defaults to ``path``'s, so tools that pick a format by extension still do)."""
    p = Path(path)
    tail = p.suffix if suffix is None else suffix
    return p.with_name(f".{p.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.partial{tail}")


@contextmanager
def atomic_path(path: str | os.PathLike[str], suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; write it in the block. On success it is renamed onto
    ``path`` (replacing an older file, or the symlink itself, never a symlink's target); on any
    exception, KeyboardInterrupt and SIGTERM included, it is deleted and ``path`` is untouched."""
    target = Path(path)
    tmp = partial_path(target, suffix)
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        try:
            tmp.unlink()
        except FileNotFoundError:
            pass


def replace_sidecars(path: str | os.PathLike[str], new_from: str | os.PathLike[str] | None = None) -> None:
    """After a raster was written to ``path``: move the sidecars of ``new_from`` (the temporary file
    it was written as) onto ``path``'s, and delete ``path``'s stale ones that have no new counterpart."""
    for old, new in zip(sidecars(path), sidecars(new_from) if new_from is not None else [None] * 3):
        if new is not None and new.exists():
            os.replace(new, old)
            continue
        try:
            old.unlink()
        except FileNotFoundError:
            pass


def reads_of(rasters: Iterable[tuple[str, str | os.PathLike[str] | None]] = (),
             files: Iterable[tuple[str, str | os.PathLike[str] | None]] = ()) -> list[tuple[str, Path]]:
    """The ``(description, path)`` read list of :func:`check_outputs`: every file GDAL reads for
    each ``(what, raster)`` (the raster, its VRT sources and sidecars) and each ``(what, file)``
    (model, labels, weights)."""
    out: list[tuple[str, Path]] = []
    for what, src in rasters:
        if src is None:
            continue
        own = real_path(src) if os.path.exists(os.fspath(src)) else None
        for f in raster_files(src):
            same = own is not None and real_path(f) == own
            out.append((f"{what} {src}" if same else f"file {f} that the {what} {src} reads", f))
    out += [(f"{what} {p}", Path(p)) for what, p in files if p is not None]
    return out
