"""How a raster is predicted: one frozen, validated settings object, :class:`PredictSettings`.

:func:`~carl_geo.inference.predict_raster` and :func:`~carl_geo.inference.predict_dataarray` take a
``settings=PredictSettings(...)`` and/or the same fields as keyword overrides
(``predict_raster(model, src, dst, tile_size=512)``); ``carl-geo predict`` generates its options from
the fields (:func:`add_arguments`, :func:`from_arguments`) and the QGIS plugin takes its defaults
from them. A bad value raises :class:`~carl_geo.errors.CarlGeoError` when the settings are made,
before any file is opened.

This module imports neither torch, numpy nor rasterio (the command line builds its parser from it).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from carl_geo.errors import CarlGeoError, check_choice, option
from carl_geo.settings_options import add_options, from_options, option_meta

#: Default tile side (px) of the predictors: the smallest per-pixel cost of CARL on a CPU among
#: 256 / 384 / 512 (``benchmarks/bench_tiling.py``).
DEFAULT_TILE_SIZE = 256
#: Default overlap (px, two CARL patches): with :data:`DEFAULT_TILE_SIZE` and the fitted tile extents
#: 1.15-1.19 computed pixels per raster pixel on large rasters (1.89 at the former 64).
DEFAULT_OVERLAP = 16
#: A None tile size / overlap follows the model: tiles span this many model patches across and overlap
#: by OVERLAP_PATCHES patches, i.e. 256 / 16 px for CARL's patch size 8. A model with a smaller patch
#: (polygon-trained models use 2-4 px) gets proportionally smaller tiles, so the tokens per tile, and
#: with them the cost of the spatial attention per pixel and the context the model saw in training,
#: stay the same.
TILE_PATCHES = DEFAULT_TILE_SIZE // 8
OVERLAP_PATCHES = DEFAULT_OVERLAP // 8


def check_tiling(tile_size: int, overlap: int) -> None:
    """Raise :class:`~carl_geo.errors.CarlGeoError` unless ``16 <= tile_size`` and ``0 <= overlap < tile_size / 2``."""
    if int(tile_size) != tile_size or tile_size < 16:
        raise CarlGeoError(f"{option('tile_size')} must be an integer >= 16 pixels, got {tile_size!r}")
    if int(overlap) != overlap or overlap < 0 or 2 * overlap >= tile_size:
        raise CarlGeoError(f"{option('overlap')} must be an integer >= 0 and less than half the tile size "
                           f"({tile_size} px), got {overlap!r}; lower the overlap or raise the tile size")


Output = Literal["classes", "probabilities", "embeddings"]
Precision = Literal["fp32", "int8", "bf16", "fp16", "auto"]
ProbabilityDtype = Literal["float32", "uint8"]
EmbeddingDtype = Literal["float32", "float16"]

#: What a prediction writes (:class:`PredictSettings` ``output``).
OUTPUTS: tuple[str, ...] = get_args(Output)
#: Precisions: fp32; int8 (CPU, ONNX Runtime); bf16 / fp16 autocast (fp16 needs a GPU); auto (bf16 for CARL models on
#: a CPU with AMX, else fp32: :func:`carl_geo.inference.runner.resolve_precision`). "auto" comes last, so that the
#: QGIS enum keeps the indexes of the others.
PRECISIONS: tuple[str, ...] = get_args(Precision)
PROBABILITY_DTYPES: tuple[str, ...] = get_args(ProbabilityDtype)
EMBEDDING_DTYPES: tuple[str, ...] = get_args(EmbeddingDtype)
#: Device names offered by the command line and the plugin (``cuda:N`` is accepted too).
DEVICES: tuple[str, ...] = ("auto", "cpu", "cuda", "mps")

#: Option groups of ``carl-geo predict`` (argparse group titles), in help order; None = the main group.
GROUPS: tuple[str | None, ...] = (None, "bands and wavelengths", "tiling and device", "output file")


def parse_normalization_text(text: str) -> Any:
    """``model`` -> None (the model's statistics), ``scene``, or ``MEAN,STD`` -> ``(mean, std)``."""
    if text in ("scene", "model"):
        return None if text == "model" else "scene"
    try:
        values = [float(v) for v in text.replace(" ", "").split(",") if v]
    except ValueError:
        values = []
    if len(values) != 2:
        raise argparse.ArgumentTypeError(f"expected 'model', 'scene' or MEAN,STD, got {text!r}")
    return tuple(values)


def parse_batch_size_text(text: str) -> int | str:
    """A positive integer or ``auto``."""
    if text == "auto":
        return text
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer or 'auto', got {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {n}")
    return n


def resolve_normalization(normalization: Any, bundle_normalization: Mapping[str, Any] | None
                          ) -> tuple[float, float] | None:
    """``(mean, std)`` for fixed statistics, or None when they must come from the scene.

    Args:
        normalization: None (use the bundle's), ``"scene"``, a ``(mean, std)`` pair, or a
            bundle-style dict ``{"mode": "scene"}`` / ``{"mode": "fixed", "mean": m, "std": s}``.
        bundle_normalization: the model bundle's ``normalization`` dict, or None.

    Raises:
        CarlGeoError: anything else, or a negative / non-finite std.
    """
    value = bundle_normalization if normalization is None else normalization
    if value is None or (isinstance(value, str) and value == "scene"):
        return None
    if isinstance(value, Mapping):
        mode = value.get("mode")
        if mode == "scene":
            return None
        if mode != "fixed":
            raise CarlGeoError(f"normalization mode must be 'scene' or 'fixed', got {mode!r}")
        value = (value.get("mean"), value.get("std"))
    if isinstance(value, str) or not isinstance(value, Sequence) or len(value) != 2:
        raise CarlGeoError(f"normalization must be None, 'scene' or a (mean, std) pair, got {value!r}")
    try:
        mean, std = float(value[0]), float(value[1])
    except (TypeError, ValueError):
        raise CarlGeoError(f"normalization (mean, std) must be numbers, got {value!r}") from None
    if not (math.isfinite(mean) and math.isfinite(std) and std >= 0):
        raise CarlGeoError(f"normalization needs a finite mean and a std >= 0, got {value!r}")
    return mean, std


@dataclass(frozen=True)
class PredictSettings:
    """Everything about *how* a raster is predicted (not *which* raster, model or bands).

    Attributes:
        output: ``"classes"``, ``"probabilities"`` or ``"embeddings"`` (see
            :mod:`carl_geo.inference.predictor`).
        nodata: input nodata value (None: the file's nodata / mask; NaN is always nodata).
        normalization: None (the model bundle's statistics; ``"scene"`` for a bare module),
            ``"scene"`` (one scalar mean/std sampled from up to 16 windows of the input) or a
            ``(mean, std)`` pair.
        tile_size: largest model tile side (px, >= 16); tiles are fitted to the raster
            (:mod:`carl_geo.inference.tiling`). None: the default for the model (:meth:`tiling`).
        overlap: fewest pixels shared by neighbouring tiles (< tile_size / 2); the raster is
            reflect-padded by ``overlap // 2``. None: the default for the model (:meth:`tiling`).
        batch_size: tiles per model call, or ``"auto"`` (sized to the GPU's free memory; 4 on CPU).
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"mps"``.
        precision: ``"auto"`` (default: ``"bf16"`` for a CARL model on a CPU with AMX matrix units, where the
            published backbone runs 2.2-2.5x faster than in fp32 and class maps agree with fp32 on >= 99.4 % of the
            pixels; ``"fp32"`` elsewhere, GPUs and other models included); ``"fp32"``; ``"int8"`` (CPU: int8
            weights in ONNX Runtime, 1.7-2.2x faster with the published backbone, no faster with the small CARL
            models polygon training keeps; needs ``pip install "carl-geo[int8]"``); ``"bf16"`` / ``"fp16"`` (autocast; fp16 needs a GPU; bf16 on a CPU
            without bf16 units is slower than fp32).
        compile: ``torch.compile`` the model for the run (pays off on GPUs for large rasters).
        probability_dtype: ``"float32"`` or ``"uint8"`` (scaled 0..254, 255 = nodata).
        embedding_dtype: ``"float32"`` or ``"float16"``.
        cog: write a Cloud Optimized GeoTIFF (with overviews).
        overviews: add internal overviews to a plain GeoTIFF.
        gdal_cache_mb: cap of GDAL's block cache during the run (restored afterwards; never raised);
            None: two block rows of input and output, at least 64 MiB; 0: leave it alone.
    """

    output: Output = field(default="classes", metadata=option_meta(
        None, "what to write (default: classes for a segmentation model, embeddings otherwise)",
        short="-o", cli_default=None))
    nodata: float | None = field(default=None, metadata=option_meta(
        "bands and wavelengths", "input nodata value (default: the file's)", parse=float))
    normalization: Any = field(default=None, metadata=option_meta(
        "bands and wavelengths", "input normalisation (default: the model's; scene = mean/std sampled from the "
        "raster)", metavar="model|scene|MEAN,STD", parse=parse_normalization_text))
    tile_size: int | None = field(default=None, metadata=option_meta(
        "tiling and device", f"largest tile side in pixels (default: {TILE_PATCHES} model patches, "
        f"{DEFAULT_TILE_SIZE} for CARL's patch 8)", metavar="PX", parse=int))
    overlap: int | None = field(default=None, metadata=option_meta(
        "tiling and device", f"pixels shared by neighbouring tiles, < tile size / 2 (default: {OVERLAP_PATCHES} "
        f"model patches, {DEFAULT_OVERLAP} at patch 8)", metavar="PX", parse=int))
    batch_size: int | Literal["auto"] = field(default=4, metadata=option_meta(
        "tiling and device", "tiles per model call, or auto (sized to the GPU's free memory; default 4)",
        metavar="N|auto", parse=parse_batch_size_text))
    device: str = field(default="auto", metadata=option_meta(
        "tiling and device", "auto, cpu, cuda, cuda:N or mps (default auto)"))
    precision: Precision = field(default="auto", metadata=option_meta(
        "tiling and device", "auto (default): bf16 for CARL models on a CPU with AMX units (Xeon 4th gen on; 2.2-2.5x "
        "faster with the published backbone, class maps as fp32's on over 99 of 100 pixels), fp32 elsewhere; fp32; "
        "int8: int8 weights on the CPU, about 2x faster with the published backbone, no faster with small models "
        "(needs pip install 'carl-geo[int8]'); bf16: autocast (slower than fp32 on CPUs without bf16 units); fp16: GPU autocast"))
    compile: bool = field(default=False, metadata=option_meta(
        "tiling and device", "torch.compile the model for this run (worth it on a GPU for large rasters)"))
    probability_dtype: ProbabilityDtype = field(default="float32", metadata=option_meta(
        "output file", "float32, or uint8 scaled 0..254 (default float32)"))
    embedding_dtype: EmbeddingDtype = field(default="float32", metadata=option_meta(
        "output file", "float32 (default) or float16"))
    cog: bool = field(default=False, metadata=option_meta("output file", "write a Cloud Optimized GeoTIFF (with overviews)"))
    overviews: bool = field(default=False, metadata=option_meta("output file", "add internal overviews"))
    gdal_cache_mb: float | None = field(default=None, metadata=option_meta(
        "output file", "cap of GDAL's block cache in MiB during the run (default: two block rows of input and "
        "output, at least 64; 0: leave GDAL's cache alone)", metavar="MB", parse=float))

    def __post_init__(self) -> None:
        if self.tile_size is not None or self.overlap is not None:
            check_tiling(*self.tiling())
        b = self.batch_size
        if b != "auto" and (isinstance(b, (str, bool)) or not isinstance(b, (int, float)) or int(b) != b or b < 1):
            raise CarlGeoError(f"{option('batch_size')} must be a positive integer or 'auto', got {b!r}")
        check_choice("output", self.output, OUTPUTS)
        check_choice("precision", self.precision, PRECISIONS)
        if self.probability_dtype not in PROBABILITY_DTYPES:
            raise CarlGeoError(f"probability_dtype must be 'float32' or 'uint8', got {self.probability_dtype!r}")
        if self.embedding_dtype not in EMBEDDING_DTYPES:
            raise CarlGeoError(f"embedding_dtype must be 'float32' or 'float16', got {self.embedding_dtype!r}")
        if not str(self.device or "").strip():
            raise CarlGeoError(f"device must be a name such as 'auto', 'cpu' or 'cuda', got {self.device!r}")
        if self.normalization is not None:
            resolve_normalization(self.normalization, None)  # raises on a malformed value
        if self.gdal_cache_mb is not None and not (math.isfinite(self.gdal_cache_mb) and self.gdal_cache_mb >= 0):
            raise CarlGeoError(f"gdal_cache_mb must be >= 0 (0: leave GDAL's cache alone), got {self.gdal_cache_mb!r}")

    def tiling(self, patch_size: int | None = None, min_overlap: int = 0) -> tuple[int, int]:
        """``(tile_size, overlap)`` in pixels: the settings' values, a None taking the default for a
        model of ``patch_size`` px (:data:`TILE_PATCHES` and :data:`OVERLAP_PATCHES` patches; None:
        CARL's 8, i.e. :data:`DEFAULT_TILE_SIZE` / :data:`DEFAULT_OVERLAP`); the predictors tile with this.
        A model whose output at a pixel reads ``min_overlap / 2`` px of context around it (the window features of a
        polygon-trained pixel classifier) gets at least that default overlap and tiles of at least four times it, so
        every pixel lies that far inside the tile that weighs most in the blend."""
        p = int(patch_size) if patch_size else 8
        tile = TILE_PATCHES * p if self.tile_size is None else self.tile_size
        overlap = OVERLAP_PATCHES * p if self.overlap is None else self.overlap
        if self.overlap is None and min_overlap > overlap:
            overlap = int(min_overlap)
            if self.tile_size is None:
                tile = max(tile, -(-4 * overlap // p) * p)
        return tile, overlap

    def tiling_for(self, model: object) -> tuple[int, int]:
        """:meth:`tiling` for a model (its patch size and the context its output reads, :func:`model_patch_size`,
        :func:`model_min_overlap`)."""
        return self.tiling(model_patch_size(model), model_min_overlap(model))

    def replace(self, **changes: Any) -> PredictSettings:
        """A copy with ``changes`` (field names; checked like the constructor's arguments).

        Raises:
            TypeError: a name that is not a field (as for a misspelt keyword argument).
        """
        unknown = sorted(set(changes) - set(field_names()))
        if unknown:
            raise TypeError(f"unknown prediction setting(s) {unknown}; the settings are the fields of "
                            f"PredictSettings: {', '.join(field_names())}")
        return dataclasses.replace(self, **changes) if changes else self

    @classmethod
    def resolve(cls, settings: PredictSettings | None = None, defaults: PredictSettings | None = None,
                **overrides: Any) -> PredictSettings:
        """``settings`` (or ``defaults``, or the class defaults) with keyword ``overrides`` applied."""
        base = settings if settings is not None else defaults if defaults is not None else cls()
        if not isinstance(base, PredictSettings):
            raise CarlGeoError(f"settings must be a PredictSettings, got {type(base).__name__}")
        return base.replace(**overrides)


def field_names() -> tuple[str, ...]:
    """The names of :class:`PredictSettings`' fields, in declaration (and help) order."""
    return tuple(f.name for f in dataclasses.fields(PredictSettings))


def add_arguments(groups: Mapping[str | None, Any]) -> None:
    """Add one ``--option`` per :class:`PredictSettings` field to argparse ``groups`` (title -> parser
    or argument group, see :data:`GROUPS`), with the fields' defaults, choices and help."""
    add_options(PredictSettings, groups)


def from_arguments(args: argparse.Namespace, **overrides: Any) -> PredictSettings:
    """The settings parsed by the options of :func:`add_arguments` (``overrides`` win; an option left
    at None where the field has another default keeps the field's default)."""
    return from_options(PredictSettings, args, **overrides)


def model_min_overlap(module: object) -> int:
    """The tile overlap (px) a model needs so that its output near tile edges sees its context: a module's (or a
    bundle's model's) ``min_overlap`` attribute, else 0."""
    for obj in (module, getattr(module, "model", None)):
        v = getattr(obj, "min_overlap", None)
        if isinstance(v, int) and not isinstance(v, bool) and v > 0:
            return v
    return 0


def model_patch_size(module: object) -> int | None:
    """The patch size of a CARL model, of a module wrapping one (``.backbone``) or of a model bundle
    (``.model``), else None."""
    for obj in (module, getattr(module, "backbone", None), getattr(module, "model", None),
                getattr(getattr(module, "model", None), "backbone", None)):
        p = getattr(obj, "patch_size", None)
        if isinstance(p, int) and not isinstance(p, bool) and p > 0:
            return p
    return None
