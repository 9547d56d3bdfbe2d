"""Reading and writing CARL weights safely.

Accepted files:

* the published upstream CARL-SSL Lightning checkpoint (``ssl_checkpoint_carl.ckpt``):
  ``state_dict`` with ``model.*`` (student, incl. SSL predictors) and ``teacher.*`` (EMA copy);
* upstream downstream checkpoints (``state_dict`` with ``model.*`` backbone keys and a head);
* carl_geo checkpoints (``.pt``/``.ckpt`` dicts with ``format == "carl_geo"``, carrying the config);
* safetensors files (backbone tensors; config in the metadata when written by carl_geo);
* a plain backbone state dict.

Pickled files are always read with ``torch.load(..., weights_only=True)``: a file that needs
arbitrary code to unpickle is refused with :class:`CheckpointError`, never executed. A file that
is not a torch file at all (empty, a GeoTIFF, an HTML error page, random bytes) is named for what
it is, before torch looks at it.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from carl_geo.errors import CarlGeoError, CheckpointError, ModelFileError  # noqa: F401 (CheckpointError re-exported)
from carl_geo.io.output_paths import atomic_path
from carl_geo.models.config import CARLConfig

FORMAT = "carl_geo"
FORMAT_VERSION = 1
#: Backbone sub-modules of a CARL state dict (upstream ``CARLModel`` names).
BACKBONE_PREFIXES = ("embedder.", "spectral_tf.", "linear_connector.", "spatial_encoder.")


#: File signatures of formats that people pick as a model file by mistake.
_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"II*\x00", "a TIFF / GeoTIFF image"), (b"MM\x00*", "a TIFF / GeoTIFF image"),
    (b"II+\x00", "a BigTIFF image"), (b"MM\x00+", "a BigTIFF image"), (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"), (b"\x89HDF", "an HDF5 file (e.g. Keras or netCDF-4)"),
    (b"CDF\x01", "a netCDF file"), (b"CDF\x02", "a netCDF file"), (b"\x1f\x8b", "a gzip archive"),
    (b"%PDF", "a PDF document"), (b"SQLite format 3", "an SQLite / GeoPackage file"), (b"GGUF", "a GGUF file"),
    (b"7z\xbc\xaf", "a 7-Zip archive"), (b"Rar!", "a RAR archive"), (b"BZh", "a bzip2 archive"),
)
#: How a torch file starts: a zip archive (torch.save since 1.6) or a pickle (protocol 2-5).
_TORCH_MAGIC = (b"PK\x03\x04", b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05")


def _what_file_is(path: Path) -> str | None:
    """None when ``path`` starts like a torch file; else what it is instead (for the error)."""
    size = path.stat().st_size
    if size == 0:
        return "an empty file (0 bytes; an interrupted download or copy?)"
    with open(path, "rb") as f:
        head = f.read(64)
    if head.startswith(_TORCH_MAGIC):
        return None
    for magic, kind in _SIGNATURES:
        if head.startswith(magic):
            return kind
    text = head.lstrip()
    if text[:1] == b"<":
        return "a text / HTML / XML file (an error page saved instead of the download?)"
    if text[:1] in (b"{", b"["):
        return "a JSON / text file"
    if head and all(32 <= b < 127 or b in (9, 10, 13) for b in head):
        return "a text file"
    return (f"not a PyTorch checkpoint: neither a zip archive (torch.save) nor a pickle "
            f"(it starts with bytes {head[:8].hex(' ')}, {size} bytes in all)")


#: A torch.save archive stores its tensors uncompressed: an archive whose members unpack to more than this factor of
#: its size on disk (plus a little) is a zip bomb, refused before any byte is inflated (a 6 MB file had unpacked to
#: 4.16 GB of memory before it was rejected).
MAX_UNPACK_FACTOR = 4
UNPACK_ALLOWANCE = 64 * 2**20


def _check_archive_sizes(path: Path) -> None:
    """Raise :class:`CheckpointError` when the zip directory of ``path`` announces members that unpack to far more
    than the file holds (reads the directory only)."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            total = sum(info.file_size for info in archive.infolist())
    except (zipfile.BadZipFile, OSError, ValueError):
        return  # torch.load's own error says what is wrong
    size = path.stat().st_size
    if total > MAX_UNPACK_FACTOR * size + UNPACK_ALLOWANCE:
        raise CheckpointError(f"refusing to load {path}: its archive unpacks to {total / 2**20:.0f} MiB from "
                              f"{size / 2**20:.1f} MiB on disk (torch files are stored uncompressed: a damaged or "
                              "hostile file)")


def _is_safetensors(path: Path) -> bool:
    """safetensors layout: an 8-byte little-endian header length, then a JSON header."""
    with open(path, "rb") as f:
        head = f.read(9)
    if len(head) < 9 or head[8:9] != b"{":
        return False
    return 2 <= int.from_bytes(head[:8], "little") <= path.stat().st_size - 8


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read a weights file without executing code.

    Returns:
        a dict with at least ``state_dict`` (str -> Tensor); carl_geo files also carry
        ``format``, ``config`` and ``meta``.

    Raises:
        CheckpointError: missing, corrupt or unsafe file.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"weights file not found: {path}" if not path.is_dir() else
                              f"{path} is a folder; give the model file inside it (.pt, .ckpt or .safetensors)")
    if path.suffix == ".safetensors" or _is_safetensors(path):
        return _read_safetensors(path)
    kind = _what_file_is(path)
    if kind is not None:
        raise CheckpointError(f"{path} is not a model file: it is {kind}. Give a CARL model file "
                              "(.pt from carl-geo train, .safetensors from carl-geo export, or a CARL .ckpt)")
    _check_archive_sizes(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        needs = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(e))
        what = f"the Python class {needs.group(1)}" if needs else "Python objects beyond tensors and plain data"
        raise CheckpointError(
            f"refusing to load {path}: it needs {what}, and carl_geo never runs code from a model file. "
            "Re-save the weights as a state dict (torch.save(model.state_dict(), path)) or as safetensors"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as e:
        detail = str(e).splitlines()[0] if str(e).strip() else type(e).__name__
        if "weights_only" in detail:
            detail = type(e).__name__
        raise CheckpointError(f"cannot read {path}: a damaged or truncated torch file ({detail})") from None
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path} holds a {type(obj).__name__}, not a checkpoint dict")
    if "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        return dict(obj)
    if obj and all(isinstance(v, Tensor) for v in obj.values()):
        return {"state_dict": dict(obj)}
    raise CheckpointError(f"{path} has no 'state_dict' and is not a state dict (keys: {sorted(obj)[:8]})")


def _read_safetensors(path: Path) -> dict[str, Any]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file, safe_open

    try:
        state = load_file(str(path))
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"cannot read {path}: not a valid safetensors file ({e})") from None
    out: dict[str, Any] = {"state_dict": state}
    if metadata.get("format") == FORMAT:
        out["format"] = FORMAT
        out["config"] = json.loads(metadata["config"])
        out["meta"] = json.loads(metadata.get("meta", "{}"))
    return out


def backbone_state_dict(state_dict: Mapping[str, Tensor], which: str = "student") -> dict[str, Tensor]:
    """Extract the backbone weights (upstream ``CARLModel`` key names) from any known layout.

    Args:
        state_dict: a checkpoint's state dict.
        which: ``"student"`` (the ``model.`` sub-tree) or ``"teacher"`` (the EMA ``teacher.``
            sub-tree of an SSL checkpoint).

    Raises:
        CheckpointError: ``which="teacher"`` on a checkpoint without a teacher, or no backbone.
    """
    if which not in ("student", "teacher"):
        raise CarlGeoError(f"which must be 'student' or 'teacher', got {which!r}")
    candidates = ("teacher.",) if which == "teacher" else ("model.", "backbone.", "model.backbone.", "")
    for prefix in sorted(candidates, key=len, reverse=True):
        sub = {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}
        sub = {k: v for k, v in sub.items() if k.startswith(BACKBONE_PREFIXES)}
        if sub:
            return sub
    if which == "teacher":
        raise CheckpointError("this checkpoint has no 'teacher.*' weights (it is not a CARL-SSL checkpoint)")
    raise CheckpointError(
        "no CARL backbone weights found: expected keys like 'model.embedder.weight' or 'embedder.weight', "
        f"got e.g. {sorted(state_dict)[:5]}"
    )


def load_backbone_weights(model: nn.Module, state_dict: Mapping[str, Tensor]) -> None:
    """``model.load_state_dict(state_dict, strict=True)`` with an error that names the problem.

    Raises:
        CheckpointError: listing missing keys, unexpected keys and shape mismatches.
    """
    own = model.state_dict()
    missing = sorted(set(own) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(own))
    shapes = [
        f"{k}: checkpoint {tuple(state_dict[k].shape)} vs model {tuple(own[k].shape)}"
        for k in sorted(set(own) & set(state_dict))
        if tuple(state_dict[k].shape) != tuple(own[k].shape)
    ]
    if missing or unexpected or shapes:
        parts = []
        for title, items in (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", shapes)):
            if items:
                more = f" (+{len(items) - 10} more)" if len(items) > 10 else ""
                parts.append(f"{len(items)} {title}: {', '.join(items[:10])}{more}")
        raise CheckpointError(
            "checkpoint does not match this CARL architecture; " + "; ".join(parts)
            + ". Pass the config the weights were trained with (e.g. config=tiny_config())."
        )
    model.load_state_dict(state_dict, strict=True)


def load_carl(path: str | os.PathLike, config: CARLConfig | None = None, which: str = "student",
              default_config: CARLConfig | None = None) -> nn.Module:
    """Build a :class:`~carl_geo.models.carl.CARL` and load weights from ``path``.

    Args:
        path: any accepted weights file (see module docstring).
        config: the architecture, overriding what the file stores; default: the config stored in
            a carl_geo file, else the upstream ``hyper_parameters['model_kwargs']`` if present,
            else ``default_config``.
        which: ``"student"`` or ``"teacher"`` (SSL checkpoints only).
        default_config: the architecture of files that store none (default: the published one).

    Returns:
        the model in eval mode on CPU.
    """
    from carl_geo.models.carl import CARL

    ckpt = read_checkpoint(path)
    if config is None:
        config = config_from_checkpoint(ckpt, default_config)
    model = CARL(config)
    try:
        load_backbone_weights(model, backbone_state_dict(ckpt["state_dict"], which))
    except CheckpointError as e:
        raise CheckpointError(f"{path}: {e}") from None
    return model.eval()


def config_from_checkpoint(ckpt: Mapping[str, Any], default: CARLConfig | None = None) -> CARLConfig:
    """The architecture stored in a checkpoint, else ``default`` (else the published config)."""
    if ckpt.get("format") == FORMAT and "config" in ckpt:
        return CARLConfig.from_dict(ckpt["config"])
    hp = ckpt.get("hyper_parameters") or {}
    for key in ("model_kwargs", "downstream_model_kwargs"):
        if isinstance(hp.get(key), Mapping):
            return CARLConfig.from_upstream(hp[key])
    return default if default is not None else CARLConfig()


def save_carl(model: nn.Module, path: str | os.PathLike, meta: Mapping[str, Any] | None = None) -> Path:
    """Save a CARL backbone with its config: safetensors if ``path`` ends in ``.safetensors``,
    else a ``weights_only``-loadable torch file. ``meta`` must be JSON-serialisable.

    The file is written to a temporary name and renamed on success.
    """
    path = Path(path)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    config = model.config.to_dict()
    meta = dict(meta or {})
    with atomic_path(path) as tmp:
        if path.suffix == ".safetensors":
            from safetensors.torch import save_file

            save_file(state, str(tmp), metadata={"format": FORMAT, "config": json.dumps(config),
                                                 "meta": json.dumps(meta)})
        else:
            torch.save({"format": FORMAT, "version": FORMAT_VERSION, "kind": "backbone",
                        "config": config, "meta": meta, "state_dict": state}, tmp)
    return path
