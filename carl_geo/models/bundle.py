"""Model files that carry everything a prediction needs.

A *model bundle* is a CARL network plus the facts a user should not have to repeat: the task,
class names and colours, the wavelengths (µm) and band names it was trained on, and the input
normalisation. The tiled predictor, the CLI and the QGIS plugin load a bundle with no extra
arguments. A bare backbone file (any format :func:`~carl_geo.models.checkpoint.read_checkpoint`
accepts) loads as a ``"features"`` bundle.

On disk a bundle is a ``torch.save`` dict of plain types and tensors only, so it loads with
``torch.load(weights_only=True)``::

    {"format": "carl_geo", "version": 1, "kind": "segmentation",
     "config": CARLConfig.to_dict(), "head": {"type", "num_classes", "kwargs", "max_bands", "pixelwise"},
     "state_dict": CARLSegmenter.state_dict(), "classes": [...], "colors": [[r, g, b], ...],
     "class_values": [int, ...] | None,
     "wavelengths": [...], "band_names": [...], "sensor": str | None,
     "normalization": {"mode": "scene"} | {"mode": "fixed", "mean": float, "std": float},
     "meta": {...}}
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from carl_geo.errors import CarlGeoError, ModelFileError
from carl_geo.io.output_paths import atomic_path
from carl_geo.models.carl import CARL
from carl_geo.models.checkpoint import (
    FORMAT,
    FORMAT_VERSION,
    CheckpointError,
    backbone_state_dict,
    config_from_checkpoint,
    load_backbone_weights,
    read_checkpoint,
)
from carl_geo.class_colors import class_colors
from carl_geo.models.config import CARLConfig
from carl_geo.models.pixel_classifier import PixelClassifier, build_pixel_classifier, is_segmentation_module
from carl_geo.models.segmentation import CARLEmbedder, CARLSegmenter

SCENE_NORMALIZATION: dict[str, Any] = {"mode": "scene"}


@dataclass
class ModelBundle:
    """A CARL network with its metadata.

    Attributes:
        model: :class:`CARLSegmenter` (task ``"segmentation"``) or :class:`CARLEmbedder`
            (task ``"features"``); both are called as ``model(img (B, C, H, W), wavelengths)``.
        task: ``"segmentation"`` or ``"features"``.
        class_names: names of the K classes (segmentation only).
        colors: RGB 0-255 colour of each class.
        class_values: the pixel value of each class in predicted class rasters: the user's own
            numeric codes when the training labels were numbers (e.g. ``[1, 3, 4]``), else None
            (values 0..K-1, as in files written before class values were stored).
        wavelengths: band centres (µm) the model was trained with, or None (any bands).
        band_names: band names matching ``wavelengths``, or None.
        sensor: sensor preset name, or None.
        normalization: ``{"mode": "scene"}`` (one scalar mean/std from the scene, as upstream)
            or ``{"mode": "fixed", "mean": m, "std": s}`` (values stored at training time).
        meta: free-form JSON-like facts (training report, source files, ...).
        path: the file the bundle was loaded from (not saved; outputs may never replace it).
    """

    model: nn.Module
    task: str = "features"
    class_names: list[str] = field(default_factory=list)
    colors: list[tuple[int, int, int]] = field(default_factory=list)
    wavelengths: list[float] | None = None
    band_names: list[str] | None = None
    sensor: str | None = None
    normalization: dict[str, Any] = field(default_factory=lambda: dict(SCENE_NORMALIZATION))
    meta: dict[str, Any] = field(default_factory=dict)
    class_values: list[int] | None = None
    path: Path | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self.task not in ("segmentation", "features"):
            raise CarlGeoError(f"task must be 'segmentation' or 'features', got {self.task!r}")
        if self.task == "segmentation":
            k = self.model.num_classes
            if not self.class_names:
                self.class_names = [f"class {i}" for i in range(k)]
            if len(self.class_names) != k:
                raise CarlGeoError(f"{len(self.class_names)} class names for a {k}-class model")
            if not self.colors:
                self.colors = class_colors(self.class_names)
            self.colors = [tuple(int(v) for v in c) for c in self.colors]
            if len(self.colors) != k:
                raise CarlGeoError(f"{len(self.colors)} colours for a {k}-class model")
            self.class_values = check_class_values(self.class_values, k)
        if self.wavelengths is not None:
            self.wavelengths = [float(w) for w in self.wavelengths]
            if self.band_names is not None and len(self.band_names) != len(self.wavelengths):
                raise CarlGeoError("band_names and wavelengths differ in length")
        mode = self.normalization.get("mode")
        if mode not in ("scene", "fixed"):
            raise CarlGeoError(f"normalization mode must be 'scene' or 'fixed', got {mode!r}")

    @property
    def backbone(self) -> CARL:
        return self.model.backbone

    @property
    def num_outputs(self) -> int:
        """K classes, or D feature channels."""
        return self.model.num_classes if self.task == "segmentation" else self.model.out_channels


#: Largest class value a class raster can hold (uint16 with 65535 as nodata).
MAX_CLASS_VALUE = 65534


def check_class_values(values: Sequence[int] | None, k: int) -> list[int] | None:
    """``values`` as K distinct ints in 0..:data:`MAX_CLASS_VALUE` (None stays None: 0..K-1).

    Raises:
        ModelFileError: wrong count, non-integers, duplicates or values out of range.
    """
    if values is None:
        return None
    try:
        out = [int(v) for v in values]
    except (TypeError, ValueError):
        raise ModelFileError(f"class values must be integers, got {list(values)!r}") from None
    if any(o != v for o, v in zip(out, values)) or len(out) != k or len(set(out)) != k \
            or not all(0 <= v <= MAX_CLASS_VALUE for v in out):
        raise ModelFileError(f"class values must be {k} distinct integers in 0..{MAX_CLASS_VALUE}, "
                             f"got {list(values)!r}")
    return out


def save_bundle(bundle: ModelBundle, path: str | os.PathLike) -> Path:
    """Write a bundle (temporary file + rename, so a failed or interrupted save leaves no file and
    keeps an older file at ``path``)."""
    path = Path(path)
    state = {k: v.detach().cpu().contiguous() for k, v in bundle.model.state_dict().items()}
    obj: dict[str, Any] = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "kind": bundle.task,
        "config": bundle.backbone.config.to_dict(),
        "state_dict": state,
        "classes": list(bundle.class_names),
        "colors": [list(c) for c in bundle.colors],
        "class_values": list(bundle.class_values) if bundle.class_values is not None else None,
        "wavelengths": bundle.wavelengths,
        "band_names": bundle.band_names,
        "sensor": bundle.sensor,
        "normalization": dict(bundle.normalization),
        "meta": dict(bundle.meta),
    }
    if isinstance(bundle.model, PixelClassifier):
        obj["head"] = {**bundle.model.carl.head_config(), "pixel": bundle.model.config()}
    elif bundle.task == "segmentation":
        obj["head"] = bundle.model.head_config()
    else:
        obj["which"] = bundle.model.which
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)
    return path


def load_bundle(path: str | os.PathLike, config: CARLConfig | None = None, which: str = "student") -> ModelBundle:
    """Load a model file as a :class:`ModelBundle` (model in eval mode, on CPU).

    Args:
        path: a bundle written by :func:`save_bundle`, or any backbone weights file (then the
            bundle is a ``"features"`` bundle with scene normalisation).
        config: architecture override for upstream files that do not store one.
        which: ``"student"``/``"teacher"`` for SSL checkpoints.

    Raises:
        CheckpointError: unreadable, unsafe or inconsistent file.
    """
    ckpt = _from_lightning(read_checkpoint(path))
    cfg = config or config_from_checkpoint(ckpt)
    kind = ckpt.get("kind") if ckpt.get("format") == FORMAT else None
    try:
        if kind == "segmentation":
            head = ckpt["head"]
            model: nn.Module = CARLSegmenter(CARL(cfg), int(head["num_classes"]), head["type"], head.get("kwargs"),
                                             max_bands=head.get("max_bands"), pixelwise=bool(head.get("pixelwise")))
            if head.get("pixel") is not None:
                model = _pixel_classifier(model, head["pixel"], ckpt["state_dict"])
            load_backbone_weights(model, ckpt["state_dict"])
            for part in model.heads if isinstance(model, PixelClassifier) else []:
                if hasattr(part, "check"):
                    part.check()  # tree links of a damaged or hostile file
            task = "segmentation"
        else:
            model = CARLEmbedder(CARL(cfg), ckpt.get("which", "spatial"))
            state = ckpt["state_dict"]
            if kind != "features":
                state = backbone_state_dict(state, which)
            else:
                state = {k[len("backbone."):]: v for k, v in state.items() if k.startswith("backbone.")}
            load_backbone_weights(model.backbone, state)
            task = "features"
        return ModelBundle(
            model=model.eval(),
            task=task,
            class_names=list(ckpt.get("classes") or []),
            colors=[tuple(c) for c in ckpt.get("colors") or []],
            wavelengths=ckpt.get("wavelengths"),
            band_names=ckpt.get("band_names"),
            sensor=ckpt.get("sensor"),
            normalization=dict(ckpt.get("normalization") or SCENE_NORMALIZATION),
            meta=dict(ckpt.get("meta") or {}),
            class_values=ckpt.get("class_values") if task == "segmentation" else None,
            path=Path(path),
        )
    except CheckpointError as e:
        raise CheckpointError(f"{path}: {e}") from None
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: malformed carl_geo model file ({type(e).__name__}: {e})") from None


def _pixel_classifier(carl: CARLSegmenter, config: Mapping[str, Any], state: Mapping[str, Any]) -> PixelClassifier:
    """The :class:`PixelClassifier` around ``carl`` described by ``config``. Every size in ``config`` is first
    compared with the tensors stored beside it, so a file cannot make the loader allocate more than it holds."""
    def size(key: str, dim: int = 0) -> int | None:
        t = state.get(key)
        return int(t.shape[dim]) if isinstance(t, torch.Tensor) and t.ndim > dim else None

    try:
        ctx, heads = config.get("context"), config.get("heads") or []
        checks = []
        if ctx:
            checks += [("context n_bands", ctx["n_bands"], size("context.band_mean")),
                       ("context n_components", ctx["n_components"], size("context.components"))]
        for i, head in enumerate(heads):
            kw, at = head["kwargs"], f"heads.{i}."
            if head.get("type") == "forest":
                checks += [("forest nodes", kw["n_nodes"], size(at + "feature")),
                           ("forest trees", kw["n_trees"], size(at + "roots")),
                           ("forest classes", kw["n_classes"], size(at + "value", 1))]
                if not 0 <= int(kw["max_depth"]) < int(kw["n_nodes"]) + 1:
                    checks.append(("forest depth", kw["max_depth"], None))
            elif head.get("type") == "mlp":
                layers = sum(1 for k in state if k.startswith(at + "net.") and k.endswith(".weight")) - 1
                checks += [("MLP inputs", kw["in_dim"], size(at + "feat_mean")),
                           ("MLP width", kw["hidden"], size(at + "net.0.weight")), ("MLP layers", kw["depth"], layers)]
        bank = config.get("bank")
        if bank:
            checks += [("exemplar pixels", bank["n_pixels"], size("bank.values")),
                       ("exemplar labels", bank["n_pixels"], size("bank.labels")),
                       ("exemplar bands", len(bank["wavelengths"]), size("bank.values", 1)),
                       ("exemplar wavelengths", len(bank["wavelengths"]), size("bank.wavelengths")),
                       ("exemplar windows", 1 + len(bank["windows"]), size("bank.values", 2))]
        for what, stated, stored in checks:
            if stored is None or int(stated) != stored:
                raise CheckpointError(f"the pixel classifier's {what} ({stated}) does not match the stored weights")
        return build_pixel_classifier(carl, dict(config))
    except CarlGeoError as e:
        raise CheckpointError(str(e)) from None
    except (AttributeError, KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"malformed pixel classifier settings ({type(e).__name__}: {e})") from None


def _from_lightning(ckpt: dict[str, Any]) -> dict[str, Any]:
    """A Lightning checkpoint of a carl_geo task (:mod:`carl_geo.trainers`) stores the bundle facts
    under ``"carl_geo"``; return it in the bundle layout (task prefix stripped from the weights).
    Classification checkpoints become feature bundles of their backbone."""
    extra = ckpt.get("carl_geo")
    if not isinstance(extra, Mapping):
        return ckpt
    extra = dict(extra)
    prefix = extra.pop("state_dict_prefix", "")
    state = {k[len(prefix):]: v for k, v in ckpt["state_dict"].items() if k.startswith(prefix)}
    if extra.get("kind") != "segmentation":
        extra["kind"] = "features"
    return {**extra, "format": FORMAT, "state_dict": state}


def make_bundle(model: nn.Module, *, class_names: Sequence[str] = (), colors: Sequence[Sequence[int]] = (),
                wavelengths: Sequence[float] | None = None, band_names: Sequence[str] | None = None,
                sensor: str | None = None, normalization: Mapping[str, Any] | None = None,
                meta: Mapping[str, Any] | None = None, class_values: Sequence[int] | None = None) -> ModelBundle:
    """Convenience constructor: a :class:`CARLSegmenter` becomes a segmentation bundle, a
    :class:`CARL` or :class:`CARLEmbedder` a features bundle. ``class_values``: the pixel value of
    each class in predicted rasters (the training labels' own numeric codes), or None for 0..K-1."""
    if isinstance(model, CARL):
        model = CARLEmbedder(model)
    task = "segmentation" if is_segmentation_module(model) else "features"
    return ModelBundle(model=model, task=task, class_names=list(class_names),
                       colors=[tuple(c) for c in colors], wavelengths=list(wavelengths) if wavelengths else None,
                       band_names=list(band_names) if band_names else None, sensor=sensor,
                       normalization=dict(normalization or SCENE_NORMALIZATION), meta=dict(meta or {}),
                       class_values=list(class_values) if class_values is not None else None)
