"""What prediction can write, in one registry: :data:`OUTPUT_KINDS`.

Each :class:`OutputKind` says what its bands hold, whether it needs a model with classes, how the model's (K, h, W)
result becomes its bands (:meth:`OutputKind.encode`) and the file layout (dtype, nodata, band descriptions, tags,
colour table, overview resampling: :meth:`OutputKind.layout`). The predictor, the xarray predictor, the command
line's ``--output`` choices (through :data:`carl_geo.inference.settings.Output`, checked against this registry by a
test) and the QGIS plugin's output list (a test checks it is :func:`class_outputs`) all follow it: a new kind is one
entry here with its two functions.

* ``"classes"``: band 1 = argmax class; uint8 (nodata 255) for up to 254 classes, else uint16 (nodata 65535);
  colour table from the class colours; tags ``CLASS_NAMES`` (JSON) and ``CLASS_<value>``;
* ``"probabilities"``: K bands (softmax), float32 (nodata NaN) or uint8 scaled 0..254 (``p = value / 254``, band
  scale set; nodata 255); band descriptions = class names;
* ``"embeddings"``: D bands of per-pixel features, float32 or float16 (nodata NaN).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from rasterio.enums import Resampling

from carl_geo.errors import check_choice
from carl_geo.inference.writer import class_tags

CLASS_NODATA = {"uint8": 255, "uint16": 65535}
#: uint8 probabilities: ``value = round(p * PROB_SCALE)``, 255 = nodata.
PROB_SCALE = 254


@dataclass(frozen=True)
class LayoutInput:
    """What a layout depends on: K outputs, class names / colours / values (segmentation models) and the
    probability / embedding dtypes asked for (:class:`~carl_geo.inference.settings.PredictSettings`)."""

    count: int
    class_names: Sequence[str]
    colors: Sequence[Sequence[int]]
    class_values: Sequence[int] | None
    probability_dtype: str
    embedding_dtype: str


@dataclass(frozen=True)
class OutputKind:
    """One kind of output.

    Attributes:
        name: the ``output=`` value.
        description: what the bands hold (help texts).
        needs_classes: only models with classes produce it (the softmax of their logits); otherwise the model's
            features are written as they are.
        class_map: one band of class values (colour table, class value list in reports and quick looks).
        layout: ``layout(LayoutInput) -> dict`` with ``count, dtype, nodata, descriptions, colormap, tags, scale,
            resampling, codes``.
        encode: ``encode(blended (K, h, W) float32, dtype, codes) -> (count, h, W)`` on the same device, before
            nodata is applied.
    """

    name: str
    description: str
    needs_classes: bool
    class_map: bool
    layout: Callable[[LayoutInput], dict[str, Any]]
    encode: Callable[[torch.Tensor, str, Sequence[int] | None], torch.Tensor]


def _classes_layout(x: LayoutInput) -> dict[str, Any]:
    codes = list(x.class_values) if x.class_values is not None else list(range(x.count))
    dtype = "uint8" if max(codes, default=0) <= 254 else "uint16"
    nodata = CLASS_NODATA[dtype]
    cmap = {v: (*c, 255) for v, c in zip(codes, x.colors)}
    cmap[nodata] = (0, 0, 0, 0)
    return dict(count=1, dtype=dtype, nodata=nodata, descriptions=["class"], colormap=cmap,
                tags={**class_tags(x.class_names, codes), "CLASS_COLORS": json.dumps([list(c) for c in x.colors])},
                scale=None, resampling=Resampling.nearest, codes=x.class_values)


def _classes_encode(blended: torch.Tensor, dtype: str, codes: Sequence[int] | None) -> torch.Tensor:
    index = blended.argmax(dim=0, keepdim=True)
    if codes is not None:
        index = torch.as_tensor(codes, dtype=torch.int64, device=index.device)[index]
    return index.to(torch.uint8 if dtype == "uint8" else torch.int32)


def _probabilities_layout(x: LayoutInput) -> dict[str, Any]:
    u8 = x.probability_dtype == "uint8"
    return dict(count=x.count, dtype="uint8" if u8 else "float32", nodata=255 if u8 else float("nan"),
                descriptions=list(x.class_names), colormap=None, tags=class_tags(x.class_names, x.class_values),
                scale=1.0 / PROB_SCALE if u8 else None, resampling=Resampling.average, codes=None)


def _values_encode(blended: torch.Tensor, dtype: str, codes: Sequence[int] | None) -> torch.Tensor:
    if dtype == "uint8":
        return torch.round(blended.clamp(0.0, 1.0) * PROB_SCALE).to(torch.uint8)
    return blended.to(getattr(torch, dtype))


def _embeddings_layout(x: LayoutInput) -> dict[str, Any]:
    return dict(count=x.count, dtype=x.embedding_dtype, nodata=float("nan"),
                descriptions=[f"embedding_{i:03d}" for i in range(x.count)], colormap=None, tags={},
                scale=None, resampling=Resampling.average, codes=None)


#: Every output kind, by name (the order of the ``--output`` choices).
OUTPUT_KINDS: dict[str, OutputKind] = {k.name: k for k in (
    OutputKind("classes", "one band of class values with a colour table", True, True, _classes_layout,
               _classes_encode),
    OutputKind("probabilities", "one band per class: its probability", True, False, _probabilities_layout,
               _values_encode),
    OutputKind("embeddings", "one band per feature of the backbone", False, False, _embeddings_layout,
               _values_encode),
)}


def output_kind(name: str) -> OutputKind:
    """The registered kind ``name`` (else a :class:`~carl_geo.errors.CarlGeoError` naming the kinds)."""
    return OUTPUT_KINDS[check_choice("output", name, OUTPUT_KINDS)]


def class_outputs() -> tuple[str, ...]:
    """The kinds a model with classes adds to what any model gives (``classes``, ``probabilities``)."""
    return tuple(name for name, kind in OUTPUT_KINDS.items() if kind.needs_classes)


def default_output(task: str) -> str:
    """What a model file of ``task`` writes when no output is asked for: its class map, or its features."""
    return "classes" if task == "segmentation" else "embeddings"
