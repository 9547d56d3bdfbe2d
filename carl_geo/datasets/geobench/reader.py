"""Reader of GEO-Bench's published on-disk format (without the ``geobench`` package).

Layout (GEO-Bench v1.0 as published on Hugging Face, ``recursix/geo-bench-1.0``)::

    ROOT/classification_v1.0/m-eurosat/        one folder per task
        task_specs.pkl                         pickled TaskSpecifications: bands_info, label_type, patch_size
        default_partition.json                 {"train": [sample names], "valid": [...], "test": [...]}
        0.01x_train_partition.json ...         reduced-train partitions (0.01x ... 1.00x)
        band_stats.json                        per band name: mean, std, min, max, percentiles
        <sample>.hdf5                          one file per sample

A sample file holds one HDF5 dataset per band (2-D, usually int16) and, for segmentation, one
named ``label``; its attribute ``pickle`` is the ``str()`` of a pickle of
``{band name: {"band_info": ..., "date": ..., ...}, "bands_order": [...], "label": ...}``.
``band_info`` is a ``SpectralBand``/``Sentinel2``/``Landsat8`` (with ``wavelength`` in µm) or a
band without a wavelength (``ElevationBand``, ``CloudProbability``, ``HyperSpectralBands``, SAR).
Pickles are read with :mod:`.pickles` (no code runs).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from carl_geo.errors import CarlGeoError, InputError
from carl_geo.datasets.geobench.pickles import GeoBenchRecord, load_geobench_pickle

#: ``label_type`` class name -> task kind.
LABEL_KINDS = {
    "Classification": "classification",
    "MultiLabelClassification": "multilabel",
    "SemanticSegmentation": "segmentation",
    "SegmentationClasses": "segmentation",
}
SPLITS = ("train", "valid", "test")
_PARTITION_SUFFIX = "_partition.json"


class GeoBenchFormatError(InputError):
    """A GEO-Bench file that cannot be read; the message names the file (one of carl_geo's
    :class:`~carl_geo.errors.CarlGeoError` family, so the command line prints it as one line)."""


@dataclass(frozen=True)
class BandSpec:
    """One band of a task: ``name`` as stored, ``kind`` (band_info class, e.g. ``"Sentinel2"``),
    ``wavelength`` centre in µm or ``None`` (elevation, cloud masks, SAR, hyperspectral cubes)."""

    name: str
    kind: str
    wavelength: float | None


@dataclass
class RawBand:
    """A band read from a sample file: ``data`` (H, W) or (H, W, n) as stored (usually int16)."""

    name: str
    kind: str
    wavelength: float | None
    data: np.ndarray
    date: Any = None


@dataclass
class RawSample:
    """A sample file's content: input bands in file order and the label (int for classification,
    (K,) {0, 1} array for multi-label, (H, W) int array for segmentation)."""

    name: str
    path: Path
    bands: list[RawBand]
    label: Any


@dataclass
class GeoBenchTask:
    """A GEO-Bench task folder.

    Attributes:
        name: task (dataset) name, e.g. ``"m-eurosat"``.
        directory: the task folder.
        kind: ``"classification"``, ``"multilabel"`` or ``"segmentation"``.
        num_classes: K.
        class_names: K names (``"class <i>"`` where the task stores none).
        bands: every band of the task specification, in stored order.
        patch_size: (H, W) of the largest band.
        partitions: partition name -> JSON file.
    """

    name: str
    directory: Path
    kind: str
    num_classes: int
    class_names: list[str]
    bands: list[BandSpec]
    patch_size: tuple[int, int] | None
    partitions: dict[str, Path] = field(default_factory=dict)

    @property
    def spectral_bands(self) -> list[BandSpec]:
        """The bands CARL can use: those with a wavelength (upstream drops the others)."""
        return [b for b in self.bands if b.wavelength is not None]

    def resolve_partition(self, name: str) -> str:
        """The stored partition name for ``name``: ``"default"``, ``"0.01x_train"``; ``"0.01x"``
        and ``"0.01"`` are accepted too.

        Raises:
            ValueError: unknown partition (the message lists the available ones).
        """
        candidates = [name, f"{name}_train"]
        if re.fullmatch(r"\d*\.?\d+x?", name):
            candidates.append(f"{float(name.rstrip('x')):.2f}x_train")
        for c in candidates:
            if c in self.partitions:
                return c
        raise CarlGeoError(f"task {self.name} has no partition {name!r}; "
                           f"available: {', '.join(sorted(self.partitions))}")

    def partition(self, name: str = "default") -> dict[str, list[str]]:
        """``{"train": [...], "valid": [...], "test": [...]}`` sample names of a partition."""
        key = self.resolve_partition(name)
        path = self.partitions[key]
        try:
            with open(path) as fd:
                parts = json.load(fd)
        except (OSError, json.JSONDecodeError) as e:
            raise GeoBenchFormatError(f"cannot read partition file {path}: {e}") from None
        if not isinstance(parts, dict) or not set(SPLITS) <= set(parts):
            raise GeoBenchFormatError(f"partition file {path} must map 'train', 'valid' and 'test' to sample lists")
        return {s: list(parts[s]) for s in SPLITS}

    def sample_path(self, sample_name: str) -> Path:
        return self.directory / f"{sample_name}.hdf5"

    def band_stats(self) -> dict[str, tuple[float, float]]:
        """``{band name: (mean, std)}`` from ``band_stats.json`` (GEO-Bench's per-band statistics)."""
        path = self.directory / "band_stats.json"
        if not path.is_file():
            raise FileNotFoundError(
                f"{path} not found: per-band normalisation needs GEO-Bench's band_stats.json "
                "(use --normalization image instead)")
        try:
            with open(path) as fd:
                raw = json.load(fd)
            return {k: (float(v["mean"]), float(v["std"])) for k, v in raw.items()}
        except (OSError, json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
            raise GeoBenchFormatError(f"cannot read band statistics {path}: {e}") from None

    def missing_samples(self, partition: str = "default") -> list[Path]:
        """Sample files of a partition that do not exist (cheap pre-flight check)."""
        parts = self.partition(partition)
        return [p for s in SPLITS for p in map(self.sample_path, parts[s]) if not p.is_file()]


def _wavelength(band_info: Any) -> float | None:
    w = getattr(band_info, "wavelength", None)
    if w is None:
        return None
    try:
        return float(w)
    except (TypeError, ValueError):
        return None


def _band_spec(info: Any) -> BandSpec:
    return BandSpec(name=str(getattr(info, "name", "?")), kind=type(info).__name__, wavelength=_wavelength(info))


def _class_names(label_type: Any, k: int) -> list[str]:
    for attr in ("_class_names", "class_names", "class_name"):
        names = label_type.__dict__.get(attr) if isinstance(label_type, GeoBenchRecord) else None
        if names is not None and len(names) == k:
            return [str(n) for n in names]
    return [f"class {i}" for i in range(k)]


def load_task(directory: str | Path) -> GeoBenchTask:
    """Read a task folder's ``task_specs.pkl`` and list its partitions.

    Raises:
        FileNotFoundError: no ``task_specs.pkl``.
        GeoBenchFormatError: unreadable specification or an unsupported label type.
    """
    directory = Path(directory)
    spec_path = directory / "task_specs.pkl"
    if not spec_path.is_file():
        raise FileNotFoundError(f"{spec_path} not found: {directory} is not a GEO-Bench task folder")
    try:
        spec = load_geobench_pickle(spec_path.read_bytes())
    except Exception as e:  # noqa: BLE001 - any unpickling failure (incl. UnsafePickleError) is a format error
        raise GeoBenchFormatError(f"cannot read task specification {spec_path}: {e}") from None
    label_type = getattr(spec, "label_type", None)
    kind = LABEL_KINDS.get(type(label_type).__name__)
    if kind is None:
        raise GeoBenchFormatError(
            f"{spec_path}: label type {type(label_type).__name__} is not supported "
            f"(supported: {', '.join(sorted(LABEL_KINDS))})")
    k = int(label_type.n_classes)
    patch = getattr(spec, "patch_size", None)
    partitions = {p.name[: -len(_PARTITION_SUFFIX)]: p for p in sorted(directory.glob(f"*{_PARTITION_SUFFIX}"))}
    return GeoBenchTask(
        name=directory.name, directory=directory, kind=kind, num_classes=k, class_names=_class_names(label_type, k),
        bands=[_band_spec(b) for b in getattr(spec, "bands_info", [])],
        patch_size=tuple(int(v) for v in patch) if patch is not None else None, partitions=partitions,
    )


def find_tasks(root: str | Path) -> dict[str, Path]:
    """Task folders under ``root``: ``root`` itself, ``root/<task>`` or ``root/<benchmark>/<task>``
    (e.g. ``root/classification_v1.0/m-eurosat``).

    Raises:
        FileNotFoundError: ``root`` does not exist.
        ValueError: the same task name in two benchmark folders (point ``root`` at one of them).
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"GEO-Bench folder not found: {root}")
    found: dict[str, Path] = {}

    def visit(d: Path, depth: int) -> None:
        if (d / "task_specs.pkl").is_file():
            if d.name in found:
                raise CarlGeoError(f"task {d.name} exists in {found[d.name].parent} and {d.parent}; "
                                   "point --root at one benchmark folder")
            found[d.name] = d
        elif depth < 2:  # do not list the (many) sample files of a task folder
            for child in sorted(p for p in d.iterdir() if p.is_dir() and not p.name.startswith((".", "_"))):
                visit(child, depth + 1)

    visit(root, 0)
    return found


def read_sample(path: str | Path) -> RawSample:
    """Read one ``.hdf5`` sample file.

    Raises:
        FileNotFoundError: missing file.
        GeoBenchFormatError: corrupt or foreign file (the message names it).
    """
    import h5py

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"GEO-Bench sample file not found: {path}")
    try:
        with h5py.File(path, "r") as fp:
            if "pickle" not in fp.attrs:
                raise GeoBenchFormatError(f"{path}: no 'pickle' metadata attribute (not a GEO-Bench sample)")
            meta = fp.attrs["pickle"]
            meta = load_geobench_pickle(meta.decode() if isinstance(meta, bytes) else str(meta))
            order = meta.get("bands_order") or list(fp.keys())
            bands, label = [], meta.get("label")
            for key in order:
                attrs = meta.get(key, {})
                info = attrs.get("band_info")
                data = np.asarray(fp[key])
                if key.startswith("label"):
                    label = data
                    continue
                bands.append(RawBand(name=str(getattr(info, "name", key)), kind=type(info).__name__,
                                     wavelength=_wavelength(info), data=data, date=attrs.get("date")))
    except GeoBenchFormatError:
        raise
    except Exception as e:  # noqa: BLE001 - h5py/pickle raise many types; all mean "corrupt file"
        raise GeoBenchFormatError(f"cannot read GEO-Bench sample {path}: {type(e).__name__}: {e}") from None
    return RawSample(name=path.stem, path=path, bands=bands, label=label)
