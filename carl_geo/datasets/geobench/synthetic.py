"""A tiny synthetic benchmark in GEO-Bench's on-disk format, to smoke-test the runner.

:func:`write_synthetic_benchmark` writes three tasks that the ``geobench`` package itself can read
(same folders, ``task_specs.pkl``, partition JSON files, ``band_stats.json`` and HDF5 samples with
pickled ``band_info``)::

    ROOT/classification_v1.0/m-synth-cls          3 classes, one label per image
    ROOT/classification_v1.0/m-synth-multilabel   4 labels, several per image
    ROOT/segmentation_v1.0/m-synth-seg            3 classes per pixel

Each sample has six Sentinel-2 bands (B02, B03, B04, B08, B11, B12; wavelengths in µm from the
``sentinel2_l1c`` preset) plus an ``ElevationBand`` without a wavelength (dropped by the reader,
as upstream does). Classes differ by their reflectance spectrum (water, vegetation, soil,
built-up), so a linear probe can learn them from spectral shape alone; brightness varies per
image and pixel noise is added. Partitions: ``default`` and ``0.50x_train`` (half the training
samples).

Command line: ``carl-geo geobench --synthetic --root DIR --tasks all --config tiny ...``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from carl_geo.errors import CarlGeoError, check_choice
from carl_geo.datasets.geobench.pickles import dump_geobench_pickle, make_record, record_class
from carl_geo.sensors import get_sensor

BANDS = ("B02", "B03", "B04", "B08", "B11", "B12")
#: Reflectance (x 10 000) of four materials in the bands of :data:`BANDS` (other Sentinel-2 bands:
#: interpolated over wavelength).
MATERIALS = {
    "water": (900, 700, 500, 300, 100, 80),
    "vegetation": (400, 800, 400, 4000, 2000, 900),
    "soil": (1200, 1600, 2000, 2600, 3200, 3000),
    "built-up": (2200, 2200, 2200, 2300, 2400, 2300),
}
TASKS = {
    "m-synth-cls": ("classification_v1.0", "classification", ["water", "vegetation", "soil"]),
    "m-synth-multilabel": ("classification_v1.0", "multilabel", ["water", "vegetation", "soil", "built-up"]),
    "m-synth-seg": ("segmentation_v1.0", "segmentation", ["soil", "vegetation", "water"]),
}
_DS, _LABEL, _TASK = "geobench.dataset", "geobench.label", "geobench.task"


def _wavelengths(bands: Sequence[str]) -> list[float]:
    s2 = get_sensor("sentinel2_l1c")
    return [float(s2.wavelengths[s2.band_index(b)]) for b in bands]


def _band_infos(bands: Sequence[str]) -> list[Any]:
    infos = [make_record(_DS, "Sentinel2", name=b, alt_names=(b[1:], b[1:].lstrip("0")), spatial_resolution=10,
                         wavelength=w) for b, w in zip(bands, _wavelengths(bands))]
    infos.append(make_record(_DS, "ElevationBand", name="Elevation", alt_names=("elevation",), spatial_resolution=30))
    return infos


def material_spectra(materials: Sequence[str], bands: Sequence[str] = BANDS) -> np.ndarray:
    """(M, C) reflectance (x 10 000) of materials in the given Sentinel-2 bands."""
    ref_w, w = _wavelengths(BANDS), _wavelengths(bands)
    return np.array([np.interp(w, ref_w, MATERIALS[m]) for m in materials])


def _label_type(kind: str, names: list[str]) -> Any:
    if kind == "classification":
        return make_record(_LABEL, "Classification", n_classes=len(names), _class_names=list(names))
    if kind == "multilabel":
        return make_record(_LABEL, "MultiLabelClassification", n_classes=len(names), class_name=list(names))
    return make_record(_DS, "SegmentationClasses", name="label", alt_names=(), spatial_resolution=10,
                       n_classes=len(names), _class_names=list(names))


def _texture(rng: np.random.Generator, size: int) -> np.ndarray:
    """Smooth multiplicative texture around 1 (H, W)."""
    coarse = rng.normal(0, 1, (size // 8 + 2, size // 8 + 2))
    up = np.kron(coarse, np.ones((8, 8)))[:size, :size]
    return 1.0 + 0.05 * up


def _render(rng: np.random.Generator, class_map: np.ndarray, spectra: np.ndarray) -> np.ndarray:
    """(C, H, W) reflectance of a per-pixel material map (spectra (M, C)), with brightness,
    texture and noise."""
    img = spectra[class_map].transpose(2, 0, 1)  # (C, H, W)
    img = img * rng.uniform(0.7, 1.3) * _texture(rng, class_map.shape[0])[None]
    img = img + rng.normal(0, 60, img.shape)
    return np.clip(np.round(img), 1, 10000)


def _rectangles(rng: np.random.Generator, size: int, n_classes: int, background: int = 0) -> np.ndarray:
    mask = np.full((size, size), background, dtype=np.int64)
    for _ in range(rng.integers(2, 5)):
        h, w = rng.integers(size // 4, size // 2 + 1, 2)
        top, left = rng.integers(0, size - h + 1), rng.integers(0, size - w + 1)
        mask[top:top + h, left:left + w] = rng.integers(0, n_classes)
    return mask


def _sample(kind: str, spectra: np.ndarray, rng: np.random.Generator, size: int, index: int) -> tuple[np.ndarray, Any]:
    """(C, H, W) image and its label for one sample (spectra (K, C): one per class)."""
    k = spectra.shape[0]
    if kind == "classification":
        label = index % k
        return _render(rng, np.full((size, size), label), spectra), label
    if kind == "multilabel":
        present = rng.random(k) < 0.5
        present[rng.integers(k)] = True
        mask = np.full((size, size), int(np.flatnonzero(present)[0]))
        for j in np.flatnonzero(present)[1:]:  # each further label covers a quarter of the image
            qy, qx = divmod(int(rng.integers(4)), 2)
            mask[qy * size // 2:(qy + 1) * size // 2, qx * size // 2:(qx + 1) * size // 2] = j
        return _render(rng, mask, spectra), present.astype(np.int64)
    mask = _rectangles(rng, size, k)
    return _render(rng, mask, spectra), mask


def _write_sample(path: Path, image: np.ndarray, elevation: np.ndarray, label: Any, kind: str,
                  infos: list[Any], label_type: Any, origin: tuple[float, float]) -> None:
    import h5py

    affine = record_class("affine", "Affine")
    transform = affine.__new__(affine, 10.0, 0.0, origin[0], 0.0, -10.0, origin[1])
    attrs: dict[str, Any] = {}
    order = []
    with h5py.File(path, "w") as fp:
        layers = [(info, data) for info, data in zip(infos, [*image, elevation])]
        if kind == "segmentation":
            layers.append((label_type, label))
        for info, data in layers:
            name = info.name
            fp.create_dataset(name=name, data=np.asarray(data).astype(np.int16))
            attrs[name] = {"date": None, "date_id": None, "spatial_resolution": 10, "band_info": info,
                           "meta_info": None, "transform": transform, "crs": None}
            order.append(name)
        if kind != "segmentation":
            attrs["label"] = label
        attrs["bands_order"] = order
        fp.attrs["pickle"] = str(dump_geobench_pickle(attrs))


def _stats(values: np.ndarray) -> dict[str, float]:
    q = np.percentile(values, [0.1, 1, 5, 50, 95, 99, 99.9])
    return {"min": float(values.min()), "max": float(values.max()), "mean": float(values.mean()),
            "std": float(values.std()), "median": float(q[3]), "percentile_0_1": float(q[0]),
            "percentile_1": float(q[1]), "percentile_5": float(q[2]), "percentile_95": float(q[4]),
            "percentile_99": float(q[5]), "percentile_99_9": float(q[6])}


def write_synthetic_task(directory: str | Path, kind: str, class_names: Sequence[str], n_train: int = 32,
                         n_valid: int = 12, n_test: int = 16, size: int = 32, seed: int = 0,
                         bands: Sequence[str] = BANDS) -> Path:
    """Write one task folder (see module docstring).

    Args:
        directory: the task folder (its name is the task name).
        kind: ``"classification"``, ``"multilabel"`` or ``"segmentation"``.
        class_names: materials of :data:`MATERIALS`, one per class.
        n_train, n_valid, n_test: samples per split of the ``default`` partition.
        size: image side (pixels).
        seed: random seed.
        bands: Sentinel-2 band names (wavelengths from the ``sentinel2_l1c`` preset).
    """
    check_choice("kind", kind, ("classification", "multilabel", "segmentation"))
    unknown = set(class_names) - set(MATERIALS)
    if unknown:
        raise CarlGeoError(f"class names must be materials of {sorted(MATERIALS)}, got {sorted(unknown)}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    infos = _band_infos(bands)
    spectra = material_spectra(class_names, bands)
    label_type = _label_type(kind, class_names)
    spec = make_record(_TASK, "TaskSpecifications", dataset_name=directory.name,
                       benchmark_name=directory.parent.name, patch_size=(size, size), n_time_steps=1,
                       bands_info=infos, label_type=label_type, spatial_resolution=10)
    (directory / "task_specs.pkl").write_bytes(dump_geobench_pickle(spec))
    counts = {"train": n_train, "valid": n_valid, "test": n_test}
    names = {s: [f"{s}_{i:04d}" for i in range(n)] for s, n in counts.items()}
    values: dict[str, list[np.ndarray]] = {i.name: [] for i in infos}
    order = [n for s in ("train", "valid", "test") for n in names[s]]
    for i, name in enumerate(order):
        image, label = _sample(kind, spectra, rng, size, i)
        elevation = rng.uniform(100, 2500) + rng.normal(0, 20, (size, size))
        _write_sample(directory / f"{name}.hdf5", image, elevation, label, kind, infos, label_type,
                      (500000.0 + 1000.0 * i, 4000000.0))
        for info, data in zip(infos, [*image, elevation]):
            values[info.name].append(np.asarray(data, dtype=np.float64).ravel()[::7])
    (directory / "band_stats.json").write_text(json.dumps({k: _stats(np.concatenate(v)) for k, v in values.items()}))
    (directory / "default_partition.json").write_text(json.dumps(names, indent=1))
    half = {**names, "train": names["train"][: max(1, n_train // 2)]}
    (directory / "0.50x_train_partition.json").write_text(json.dumps(half, indent=1))
    return directory


def write_synthetic_benchmark(root: str | Path, n_train: int = 32, n_valid: int = 12, n_test: int = 16,
                              size: int = 32, seed: int = 0) -> dict[str, Path]:
    """Write the three synthetic tasks under ``root``; returns ``{task name: folder}``."""
    root = Path(root)
    return {
        name: write_synthetic_task(root / bench / name, kind, classes, n_train, n_valid, n_test, size, seed + i)
        for i, (name, (bench, kind, classes)) in enumerate(TASKS.items())
    }
