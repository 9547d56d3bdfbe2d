"""Output-path safety: no run writes over a file it reads, and every file appears atomically.

* :func:`raster_files`: the local files GDAL reads for a raster (the file itself, the sources of a
  VRT and of the VRTs among them at any depth, an ENVI header, existing ``.ovr`` / ``.aux.xml``
  sidecars, the archive of a ``/vsizip/`` / ``/vsitar/`` / ``/vsigzip/`` path), as given by GDAL;
* :func:`dataset_files`: the same for a vector file (a Shapefile's ``.dbf`` / ``.shx`` / ..., the
  ``<SrcDataSource>`` of an OGR VRT, every layer of a folder OGR opens as a data set);
* :func:`check_input_file`: refuses an input that is a FIFO, a device or a socket (GDAL would block
  forever on it); :func:`reads_of` applies it to every file a run reads;
* :func:`check_outputs`: refuses an output that is one of the files the run reads (compared as
  real paths, so symlinks and ``..`` do not get through), that is another output of the same
  run, whose sidecars are read files, whose folder is missing, that exists and is not a regular
  file (a folder, ``/dev/null``, a FIFO: whatever ``overwrite`` says), or that exists when
  ``overwrite`` is False (the command line's default, as GDAL's tools do);
* :func:`atomic_path`: a hidden temporary name beside the target, renamed onto it only when the
  block succeeds and deleted otherwise (Ctrl-C, SIGTERM, disk full), used by every writer of
  carl_geo (GeoTIFFs, model files, PNGs, JSON); a target that did not exist is created
  exclusively, so two runs writing the same new file cannot silently replace one another;
* :func:`replace_sidecars`: after a raster replaced an older one, the old ``.ovr`` / ``.aux.xml`` /
  ``.msk`` go (they would show the previous map in zoomed-out views or override its nodata and
  class names), and the new file's own sidecars move into place.
"""

from __future__ import annotations

import os
import stat
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from carl_geo.errors import InputError, OutputPathError, option

#: What a file is taken for by its name's suffix (a GIS opens it as a map, a layer, a picture; carl_geo as a model):
#: :func:`check_suffix` refuses an output named like something other than what the run writes.
SUFFIX_KINDS = {**dict.fromkeys((".tif", ".tiff"), "GeoTIFF"),
                **dict.fromkeys((".vrt", ".img", ".jp2", ".nc", ".asc"), "raster of another format"),
                **dict.fromkeys((".gpkg", ".shp", ".geojson", ".kml", ".csv"), "vector file"),
                **dict.fromkeys((".png", ".jpg", ".jpeg"), "picture"),
                **dict.fromkeys((".pt", ".ckpt", ".safetensors", ".pth"), "model file")}


def check_suffix(path: str | os.PathLike[str], writes: str, refused: Sequence[str], advice: str) -> None:
    """Refuse an output ``path`` whose suffix is of a kind in ``refused`` (:data:`SUFFIX_KINDS`): a name
    mixed up with another output (a model file named ``map.tif``, a GeoTIFF named ``map.png``).

    Args:
        writes: what the run writes there, for the message ("a model file").
        advice: what to do instead, for the message.

    Raises:
        OutputPathError: one line naming the file, what its name suggests and what to do.
    """
    kind = SUFFIX_KINDS.get(Path(path).suffix.lower())
    if kind in refused:
        raise OutputPathError(f"{Path(path).name} is named like a {kind}, but this run writes {writes} there: "
                              f"{advice}")


#: Sidecar files GDAL reads beside a raster ``x.tif``: ``x.tif.ovr``, ``x.tif.aux.xml``, ``x.tif.msk``.
SIDECAR_SUFFIXES = (".ovr", ".aux.xml", ".msk")

#: Files that make up one Shapefile / MapInfo / CSV / GML / GeoPackage layer besides the one the user
#: names (``x.shp`` -> ``x.dbf``, ...; ``x.gpkg`` -> ``x.gpkg-wal``, ...).
VECTOR_COMPANIONS = {".shp": (".shx", ".dbf", ".prj", ".cpg", ".qix", ".sbn", ".sbx", ".qmd"),
                     ".tab": (".dat", ".id", ".map", ".ind"), ".mif": (".mid",), ".csv": (".csvt", ".prj"),
                     ".gml": (".gfs", ".xsd"), ".gpkg": ("-wal", "-shm")}

#: Files that are a layer of a folder OGR opens as one data set (a folder of Shapefiles, ...).
FOLDER_LAYER_SUFFIXES = (".shp", ".dbf", ".tab", ".mif", ".csv")

#: GDAL virtual file systems whose path names a local archive: ``/vsizip/archive.zip/member``.
VSI_ARCHIVES = ("/vsizip/", "/vsitar/", "/vsigzip/", "/vsi7z/", "/vsirar/")

#: How deep :func:`raster_files` / :func:`dataset_files` follow sources of sources (cycles stop earlier).
MAX_SOURCE_DEPTH = 32

#: ``(what, path)`` pairs, e.g. ``("input raster", "scene.tif")``.
Labelled = Sequence[tuple[str, "str | os.PathLike[str] | None"]]


def real_path(path: str | os.PathLike[str]) -> Path:
    """The absolute path with every symlink and ``..`` resolved (the file itself need not exist)."""
    return Path(os.path.realpath(os.fspath(path)))


def sidecars(path: str | os.PathLike[str]) -> list[Path]:
    """GDAL sidecars of a raster path (see :data:`SIDECAR_SUFFIXES`)."""
    p = Path(path)
    return [p.with_name(p.name + s) for s in SIDECAR_SUFFIXES]


def _special_kind(path: str | os.PathLike[str]) -> str | None:
    """What an existing local path that is neither a regular file nor a folder is ("a FIFO", "a
    character device", ...); None for a regular file, a folder, a missing path or a ``/vsi`` path."""
    text = os.fspath(path)
    if text.startswith("/vsi"):
        return None
    try:
        mode = os.stat(text).st_mode
    except (OSError, ValueError):
        return None
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return None
    for test, kind in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return kind
    return "a special file"


def check_input_file(path: str | os.PathLike[str], label: str) -> None:
    """Refuse an input that exists on the local disk but is neither a regular file nor a folder (a
    FIFO, a device, a socket): GDAL would block forever opening it, or read an endless stream.
    Missing paths, folders and GDAL virtual file system paths (``/vsi...``) pass.

    Args:
        path: the input as the user gave it.
        label: what it is, as the message starts, e.g. ``"the input raster"``.

    Raises:
        InputError: (a :class:`~carl_geo.errors.CarlGeoError`) ``<label> <path> is not a regular
            file (a FIFO): give a file``.
    """
    kind = _special_kind(path)
    if kind is not None:
        raise InputError(f"{label} {os.fspath(path)} is not a regular file ({kind}): give a file")


def vsi_files(path: str | os.PathLike[str]) -> list[Path]:
    """The local files GDAL reads for a path on one of its virtual file systems: the archive of a
    ``/vsizip/``, ``/vsitar/``, ``/vsigzip/``, ``/vsi7z/`` or ``/vsirar/`` path (also written
    ``/vsizip/{archive}/member``, and chained: ``/vsitar//vsigzip//data/a.tar.gz/x.tif``), the file of
    a ``/vsisubfile/`` path; nothing for network or in-memory paths (``/vsicurl/``, ``/vsimem/``, ...)
    nor for an archive that does not exist. A path outside ``/vsi`` is returned as given."""
    return [Path(f) for f in _vsi_files(os.fspath(path), 0)]


def _vsi_files(text: str, depth: int) -> list[str]:
    if not text.startswith("/vsi"):
        return [text] if text else []
    if depth > MAX_SOURCE_DEPTH:
        return []
    if text.startswith("/vsisubfile/"):  # /vsisubfile/<offset>_<size>,<file>
        _, comma, inner = text[len("/vsisubfile/"):].partition(",")
        return _vsi_files(inner, depth + 1) if comma else []
    prefix = next((p for p in VSI_ARCHIVES if text.startswith(p)), None)
    if prefix is None:
        return []
    rest = text[len(prefix):]
    if rest.startswith("{"):  # /vsizip/{/path/to/archive.zip}/member
        level = 0
        for i, c in enumerate(rest):
            level += (c == "{") - (c == "}")
            if level == 0:
                return _vsi_files(rest[1:i], depth + 1)
        return []
    if rest.startswith("/vsi"):  # chained: the archive is on the inner file system
        return _vsi_files(rest, depth + 1)
    # as GDAL splits it: the archive is the first leading part of the path that is a file
    separators = "/\\" if os.sep == "\\" else "/"
    for cut in [i for i, c in enumerate(rest) if c in separators and i > 0] + [len(rest)]:
        candidate = rest[:cut]
        if os.path.exists(candidate) and not os.path.isdir(candidate):
            return [candidate]
    return []


def _head(path: str, size: int = 4096) -> bytes:
    """The first ``size`` bytes of a regular local file; b"" for anything else (a FIFO or a device
    is never read, and opened, if at all, without blocking)."""
    if path.startswith("/vsi") or not os.path.isfile(path):  # a device is not even opened
        return b""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except (OSError, ValueError):
        return b""
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return b""
        return os.read(fd, size)
    except OSError:
        return b""
    finally:
        os.close(fd)


def _gdal_file_list(text: str) -> list[str]:
    """GDAL's file list of raster ``text`` (rasterio's ``files``); [] when GDAL cannot open it."""
    import rasterio
    import rasterio.errors

    try:
        with rasterio.open(text) as ds:
            return [f for f in ds.files or [] if f]
    except (rasterio.errors.RasterioError, OSError, ValueError):
        return []


def _add_local(found: dict[str, None], name: str) -> None:
    """Add ``name``, or the archive a ``/vsi`` path reads, to ``found``."""
    for f in _vsi_files(name, 0):
        found.setdefault(f)


def raster_files(src: str | os.PathLike[str]) -> list[Path]:
    """The local files GDAL reads for raster ``src``: GDAL's file list of the opened raster
    (rasterio's ``files``: the file, a VRT's sources, ENVI headers, sidecars); for every source that
    is itself a VRT, its files in turn (at any depth, each file once, so a VRT cycle ends); for
    every other source, its existing sidecars; for a ``/vsizip/`` (``/vsitar/``, ``/vsigzip/``, ...)
    path, the archive (:func:`vsi_files`). Just ``src`` when it is a local file GDAL cannot open (a
    FIFO or a device is never opened), and nothing for a GDAL URI that names no local file."""
    found: dict[str, None] = {}
    _raster_files(os.fspath(src), found, set(), 0)
    return [Path(f) for f in found]


def _raster_files(text: str, found: dict[str, None], seen: set[str], depth: int) -> None:
    local = not text.startswith("/vsi")
    key = os.path.realpath(text) if local else text
    if key in seen or depth > MAX_SOURCE_DEPTH:
        return
    seen.add(key)
    local_files = [text] if local else _vsi_files(text, 0)  # a /vsizip/ path: its archive
    if all(_special_kind(f) is None for f in local_files):  # GDAL would block forever on a FIFO
        files = _gdal_file_list(text)
    else:
        files = []
    for f in files:
        _add_local(found, f)
    if local and os.path.exists(text):
        found.setdefault(text)
    elif not local:
        _add_local(found, text)
    for f in files:
        if f.startswith("/vsi"):
            if f.lower().endswith(".vrt") and f != text:
                _raster_files(f, found, seen, depth + 1)
        elif os.path.realpath(f) != key:
            if b"<VRTDataset" in _head(f):  # a VRT source of a VRT: GDAL's list stops at its name
                _raster_files(f, found, seen, depth + 1)
            else:
                for side in sidecars(f):
                    if os.path.exists(side):
                        found.setdefault(os.fspath(side))


def dataset_files(path: str | os.PathLike[str]) -> list[Path]:
    """The local files OGR (or GDAL) reads when it opens ``path`` as a data set, ``path`` first as
    given (also when it does not exist):

    * the companions of a Shapefile, MapInfo, CSV, GML or GeoPackage file (:data:`VECTOR_COMPANIONS`);
    * for an OGR VRT (``<OGRVRTDataSource>``), each ``<SrcDataSource>`` that is a local file or
      folder (relative ones resolved against the VRT's folder where ``relativeToVRT`` says so) with
      its own files in turn, at any depth (each file once, so a cycle ends);
    * for a folder (OGR opens a folder of Shapefiles as one data set), every member of every layer
      in it (:data:`FOLDER_LAYER_SUFFIXES` and their companions); every file of a ``.gdb`` folder;
    * for a raster VRT, :func:`raster_files`;
    * for a ``/vsizip/`` (``/vsitar/``, ...) path, the archive (:func:`vsi_files`).
    """
    found: dict[str, None] = {}
    _dataset_files(os.fspath(path), found, set(), 0)
    return [Path(f) for f in found]


def _companions(p: Path) -> list[Path]:
    """The companion files of layer file ``p`` (:data:`VECTOR_COMPANIONS`), in lower and, for an
    upper-case suffix, upper case."""
    extra = VECTOR_COMPANIONS.get(p.suffix.lower(), ())
    out: list[Path] = []
    for e in extra:
        if not e.startswith("."):
            out.append(p.with_name(p.name + e))
            continue
        out.append(p.with_suffix(e))
        if p.suffix.isupper():
            out.append(p.with_suffix(e.upper()))
    return out


def _folder_members(folder: Path) -> list[Path]:
    """The files OGR reads when it opens ``folder`` as a data set (see :func:`dataset_files`)."""
    try:
        entries = sorted(folder.iterdir())
    except OSError:
        return []
    if folder.suffix.lower() == ".gdb":  # File Geodatabase: the folder is the data set
        return entries
    out: list[Path] = []
    stems: set[str] = set()
    for e in entries:
        suffix = e.suffix.lower()
        if suffix in FOLDER_LAYER_SUFFIXES and not e.is_dir():
            layer = e.with_suffix(".shp" if suffix == ".dbf" else e.suffix)
            out += [e, layer, *_companions(layer)]
            stems.add(e.stem)
    member_suffixes = {s for k, v in VECTOR_COMPANIONS.items() for s in (k, *v) if s.startswith(".")}
    out += [e for e in entries if e.stem in stems and e.suffix.lower() in member_suffixes]  # X.SHX beside x.shp
    return out


def _ogr_vrt_sources(vrt: str) -> list[str]:
    """The ``<SrcDataSource>`` of OGR VRT ``vrt`` that name local files or folders (or ``/vsi``
    paths), relative ones resolved as OGR does."""
    try:
        root = ET.parse(vrt).getroot()
    except (ET.ParseError, OSError, ValueError):
        return []
    out: list[str] = []
    for node in root.iter():
        if not isinstance(node.tag, str) or node.tag.lower() != "srcdatasource":
            continue
        name = (node.text or "").strip()
        if not name:
            continue
        flag = next((v for k, v in node.attrib.items() if k.lower() == "relativetovrt"), "0")
        if flag.strip().lower() not in ("0", "no", "false", "off") and not name.startswith("/vsi") \
                and not os.path.isabs(name):
            name = os.path.realpath(os.path.join(os.path.dirname(vrt), name))  # no "x/../" in messages
        if name.startswith("/vsi") or os.path.lexists(name):  # not "PG:dbname=...": no local file
            out.append(name)
    return out


def _dataset_files(text: str, found: dict[str, None], seen: set[str], depth: int) -> None:
    if not text or depth > MAX_SOURCE_DEPTH:
        return
    if text.startswith("/vsi"):
        _add_local(found, text)
        return
    key = os.path.realpath(text)
    if key in seen:
        return
    seen.add(key)
    found.setdefault(text)
    p = Path(text)
    if p.is_dir():
        for member in _folder_members(p):
            found.setdefault(os.fspath(member))
        return
    for c in _companions(p):
        found.setdefault(os.fspath(c))
    head = _head(text)
    if b"<OGRVRTDataSource" in head:
        for source in _ogr_vrt_sources(text):
            _dataset_files(source, found, seen, depth + 1)
    elif b"<VRTDataset" in head:
        for f in raster_files(text):
            found.setdefault(os.fspath(f))


def check_outputs(outputs: Labelled, reads: Labelled, *, overwrite: bool = True) -> list[Path]:
    """Check every output path of a run before anything is computed.

    Args:
        outputs: ``(what, path)`` of each file the run will write, e.g. ``[("output", dst),
            ("quick look PNG", png)]``; None paths are skipped.
        reads: ``(description, path)`` of each file the run reads, e.g. ``("input raster
            scene.vrt", ...)``; see :func:`reads_of` (input rasters with their VRT sources at any
            depth and archives, model, label and weights files with their companion and source
            files).
        overwrite: allow replacing existing regular files (never a read file, a folder, a device
            or a FIFO).

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
            raise OutputPathError(f"the {what} {path} is not a regular file: it is a folder; give a file name "
                                  f"inside it, e.g. {path / ('result' + (path.suffix or '.tif'))}")
        kind = _special_kind(path)
        if kind is not None:
            raise OutputPathError(f"the {what} {path} is not a regular file ({kind}); the run would write into or "
                                  f"replace it, also with {option('overwrite', python='True')}: "
                                  "choose another file name")
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
    exception, KeyboardInterrupt and SIGTERM included, it is deleted and ``path`` is untouched.

    When ``path`` did not exist as the block began (nothing to replace), the last step is
    create-exclusive (a hard link to the temporary file; where the file system has none, an
    exclusively created placeholder then replaced): a ``path`` that another run created meanwhile
    keeps that run's file, and the temporary file is deleted.

    Raises:
        OutputPathError: ``path`` appeared while the block ran (another run?); nothing was replaced.
    """
    target = Path(path)
    existed = os.path.lexists(target)  # replacing it is intended (check_outputs allowed it)
    tmp = partial_path(target, suffix)
    try:
        yield tmp
        _give_mode(tmp, target if existed else None)
        if existed:
            os.replace(tmp, target)
        else:
            _move_exclusive(tmp, target)
    finally:
        try:
            tmp.unlink()
        except FileNotFoundError:
            pass


def _give_mode(tmp: Path, replaced: Path | None) -> None:
    """Give the finished file the permissions a user expects: those of the file it replaces, else a new file's
    (0666 less the umask), whatever the writer chose (safetensors writes 0600)."""
    try:
        if replaced is not None and replaced.is_file():
            mode = stat.S_IMODE(os.stat(replaced).st_mode)
        else:
            mode = 0o666 & ~_umask()
        if tmp.exists() and stat.S_IMODE(os.stat(tmp).st_mode) != mode:
            os.chmod(tmp, mode)
    except OSError:
        pass  # a file system without permissions (FAT, some shares): the file is still complete


def _umask() -> int:
    """The process's umask (read from /proc where it is, else set and restored at once)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _move_exclusive(tmp: Path, target: Path) -> None:
    """Give ``tmp``'s file the new name ``target``, never replacing a ``target`` that exists by now
    (``tmp`` itself is left for the caller to delete)."""
    try:
        try:
            os.link(tmp, target)  # fails with FileExistsError if target exists: no window
            return
        except (FileExistsError, FileNotFoundError):
            raise
        except (OSError, NotImplementedError, AttributeError):
            pass  # no hard links here (FAT, some network shares): reserve the name, then replace it
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        placeholder = os.fstat(fd)
        os.close(fd)
        try:
            os.replace(tmp, target)
        except BaseException:
            try:
                now = os.lstat(target)
                if (now.st_dev, now.st_ino) == (placeholder.st_dev, placeholder.st_ino):
                    os.unlink(target)
            except OSError:
                pass
            raise
    except FileExistsError:
        raise OutputPathError(f"{target} appeared while this run was writing it (another run?); "
                              "nothing was replaced") from None


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
    """The ``(description, path)`` read list of :func:`check_outputs`: every local file GDAL reads
    for each ``(what, raster)`` (:func:`raster_files`: the raster, its VRT sources at any depth,
    sidecars, the archive of a ``/vsizip/`` path) and each ``(what, file)`` (model, labels,
    weights; :func:`dataset_files`: a Shapefile's companions, an OGR VRT's sources, the layers of a
    folder, an archive).

    Raises:
        InputError: a raster or file, or a file one of them reads, that exists but is not a regular
            file or a folder (a FIFO, a device: :func:`check_input_file`).
    """
    out: list[tuple[str, Path]] = []
    for what, src in rasters:
        if src is not None:
            check_input_file(src, f"the {what}")
            _describe(out, what, src, raster_files(src))
    for what, p in files:
        if p is not None:
            check_input_file(p, f"the {what}")
            _describe(out, what, p, dataset_files(p))
    return out


def _describe(out: list[tuple[str, Path]], what: str, src: str | os.PathLike[str], found: list[Path]) -> None:
    """Append ``found`` (the files ``src`` reads) to ``out``, described as ``src`` itself or as a file it reads."""
    text = os.fspath(src)
    own = None if text.startswith("/vsi") else real_path(text)
    for f in found:
        if own is not None and real_path(f) == own:
            out.append((f"{what} {src}", f))
        else:
            check_input_file(f, f"file read by the {what} {src}:")
            out.append((f"file {f} that the {what} {src} reads", f))
