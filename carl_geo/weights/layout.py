"""The tensor layout of a checkpoint (every key with its shape and dtype) and checks against it.

The published CARL-SSL checkpoint's layout ships with carl_geo as package data
(``carl_geo/weights/published_keys.json``: 733 tensors, 155 M elements, derived from the upstream
training code). A downloaded file is accepted only when its ``state_dict`` has exactly these keys,
shapes and dtypes.
"""

from __future__ import annotations

import json
import os
import pickle
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from carl_geo.errors import CarlGeoError

#: Bytes per element of the dtypes a checkpoint layout may name.
DTYPE_BYTES = {"float64": 8, "float32": 4, "float16": 2, "bfloat16": 2, "int64": 8, "int32": 4, "int16": 2,
               "int8": 1, "uint8": 1, "bool": 1}

PUBLISHED_LAYOUT_FILE = Path(__file__).with_name("published_keys.json")


@dataclass(frozen=True)
class TensorSpec:
    """One entry of a layout: ``shape`` (tuple of ints) and ``dtype`` (torch name without ``torch.``)."""

    shape: tuple[int, ...]
    dtype: str

    @property
    def numel(self) -> int:
        n = 1
        for s in self.shape:
            n *= int(s)
        return n

    @property
    def nbytes(self) -> int:
        return self.numel * DTYPE_BYTES.get(self.dtype, 4)


@dataclass(frozen=True)
class CheckpointLayout:
    """Expected ``checkpoint["state_dict"]`` of a weights file: key -> :class:`TensorSpec`.

    Attributes:
        tensors: every key with its shape and dtype.
        name: a label used in messages (e.g. ``"published CARL-SSL checkpoint"``).
    """

    tensors: Mapping[str, TensorSpec]
    name: str = "checkpoint layout"
    meta: Mapping[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.tensors)

    @property
    def n_elements(self) -> int:
        return sum(t.numel for t in self.tensors.values())

    @property
    def min_file_bytes(self) -> int:
        """A lower bound of the size of a file holding these tensors (their raw data)."""
        return sum(t.nbytes for t in self.tensors.values())

    @classmethod
    def from_json(cls, path: str | os.PathLike, name: str | None = None) -> CheckpointLayout:
        """Read a layout file in the format of ``published_keys.json`` (``{"keys": [{"key", "shape",
        "dtype"}, ...]}``; the other top-level entries are kept in :attr:`meta`)."""
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        tensors = {e["key"]: TensorSpec(tuple(int(s) for s in e["shape"]), str(e["dtype"])) for e in data["keys"]}
        meta = {k: v for k, v in data.items() if k != "keys"}
        if "n_keys" in meta and meta["n_keys"] != len(tensors):
            raise CarlGeoError(f"{path}: n_keys says {meta['n_keys']} but {len(tensors)} keys are listed")
        return cls(tensors, name or Path(path).stem, meta)

    @classmethod
    def from_state_dict(cls, state_dict: Mapping[str, Any], name: str = "checkpoint layout") -> CheckpointLayout:
        """The layout of an in-memory state dict (str -> Tensor)."""
        return cls({k: TensorSpec(tuple(int(s) for s in v.shape), str(v.dtype).removeprefix("torch."))
                    for k, v in state_dict.items()}, name)

    def to_json(self, path: str | os.PathLike) -> Path:
        """Write the layout in the format :meth:`from_json` reads."""
        path = Path(path)
        data = {**self.meta, "n_keys": len(self.tensors),
                "keys": [{"key": k, "shape": list(t.shape), "dtype": t.dtype} for k, t in self.tensors.items()]}
        path.write_text(json.dumps(data, indent=1), encoding="utf-8")
        return path

    def problems(self, state_dict: Mapping[str, Any]) -> list[str]:
        """Every way ``state_dict`` (str -> Tensor) differs from this layout; empty when it matches.

        Missing keys, unexpected keys, shape and dtype mismatches are each reported (the first ten of a
        kind by name, then a count)."""
        missing = [k for k in self.tensors if k not in state_dict]
        unexpected = [k for k in state_dict if k not in self.tensors]
        shapes, dtypes = [], []
        for key, spec in self.tensors.items():
            if key not in state_dict:
                continue
            value = state_dict[key]
            shape = tuple(int(s) for s in getattr(value, "shape", ()))
            if shape != spec.shape:
                shapes.append(f"{key}: file {shape} vs expected {spec.shape}")
            dtype = str(getattr(value, "dtype", "?")).removeprefix("torch.")
            if dtype != spec.dtype:
                dtypes.append(f"{key}: file {dtype} vs expected {spec.dtype}")
        out = []
        for title, items in (("missing keys", missing), ("unexpected keys", unexpected),
                             ("shape mismatches", shapes), ("dtype mismatches", dtypes)):
            if items:
                out.append(f"{len(items)} {title}: {_first(items)}")
        return out


def _first(items: Iterable[str], n: int = 10) -> str:
    items = list(items)
    more = f" (+{len(items) - n} more)" if len(items) > n else ""
    return ", ".join(items[:n]) + more


_PUBLISHED: CheckpointLayout | None = None


def published_layout() -> CheckpointLayout:
    """The layout of the published CARL-SSL checkpoint ``ssl_checkpoint_carl.ckpt`` (package data)."""
    global _PUBLISHED
    if _PUBLISHED is None:
        _PUBLISHED = CheckpointLayout.from_json(PUBLISHED_LAYOUT_FILE, "published CARL-SSL checkpoint")
    return _PUBLISHED


def load_state_dict(path: str | os.PathLike) -> Mapping[str, Any]:
    """``checkpoint["state_dict"]`` of a torch file, loaded with ``torch.load(weights_only=True)``
    and memory-mapped when the file allows it (a 1.3 GB checkpoint is not read into memory).

    Raises:
        ValueError: the file is not a torch checkpoint, needs an unsafe unpickler, or has no state dict.
    """
    import torch

    path = Path(path)
    try:
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as e:
            if "mmap" not in str(e):
                raise
            obj = torch.load(path, map_location="cpu", weights_only=True)  # legacy (non-zip) format
    except pickle.UnpicklingError as e:
        raise CarlGeoError(f"{path} needs an unsafe unpickler (torch.load weights_only=True refused it: "
                         f"{str(e).splitlines()[0]})") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as e:
        raise CarlGeoError(f"{path} is not a readable torch checkpoint ({str(e).splitlines()[0]})") from None
    if not isinstance(obj, Mapping):
        raise CarlGeoError(f"{path} holds a {type(obj).__name__}, not a checkpoint dict")
    state = obj.get("state_dict", obj)
    if not isinstance(state, Mapping):
        raise CarlGeoError(f"{path} has no 'state_dict'")
    return state
