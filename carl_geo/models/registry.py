"""CARL in torchgeo's model API: ``torchgeo.models.get_model("carl")`` and friends.

torchgeo (0.8 - 0.10) has no public hook for third-party models: ``get_model``,
``get_model_weights``, ``get_weight`` and ``list_models`` read two module-level dicts in
``torchgeo.models.api`` (``_model`` and ``_model_weights``). Registration therefore adds CARL's
builders and weights enum to those dicts, here and nowhere else, and is a no-op when torchgeo is
not installed (the model itself needs only torch and timm).

Weights download on first use, as torchgeo's do: ``get_model("carl", weights=CARL_Weights.CARL_SSL)``
fetches the published CARL-SSL checkpoint into ``$CARL_GEO_HOME`` (default ``~/.cache/carl_geo``;
``$CARL_GEO_WEIGHTS`` names the file directly), verifies it and loads the backbone; see
:mod:`carl_geo.weights`. ``CARL_GEO_OFFLINE=1`` turns the download off.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

from torch import Tensor

from carl_geo.errors import CarlGeoError
from carl_geo.models.carl import CARL
from carl_geo.models.checkpoint import backbone_state_dict, load_backbone_weights, read_checkpoint
from carl_geo.models.config import get_config, published_config, tiny_config
from carl_geo.transforms import ImageStandardize
from carl_geo.weights.store import CARL_SSL, ensure_weights, get_weights_file, weights_path

PUBLISHED_URL = CARL_SSL.url
PUBLISHED_FILENAME = CARL_SSL.filename


CARL_META: dict[str, Any] = {
    "model": "carl",
    "publication": "https://arxiv.org/abs/2504.19223",
    "repo": "https://github.com/IMSY-DKFZ/CARL",
    "license": "Apache-2.0 (upstream code); weights: see the Zenodo record 18671944",
    "ssl_method": "carl-ssl",
    "dataset": "HySpecNet-11k, BigEarthNet, SpectralEarth",
    "in_chans": None,
    "bands": "any: pass each band's centre wavelength in micrometres",
    "wavelength_conditioned": True,
    "wavelength_unit": "um",
    "normalization": "one scalar mean/std per image over all bands: (img - mean) / (std + 1e-6)",
    "patch_size": 8,
    "filename": PUBLISHED_FILENAME,
    "config": "published",
}


def local_weights_path(filename: str = PUBLISHED_FILENAME) -> Path:
    """Where carl_geo keeps a weights file: ``$CARL_GEO_WEIGHTS`` if set (CARL-SSL), else
    ``$CARL_GEO_HOME/<filename>`` (default home ``~/.cache/carl_geo``)."""
    if filename == CARL_SSL.filename:
        return weights_path(CARL_SSL)
    return weights_path(CARL_SSL.with_(filename=filename, path_env=None))


def _load_published(which: str = "student", progress: bool = True, model_args: tuple[Any, ...] = (),
                    model_kwargs: dict[str, Any] | None = None) -> CARL:
    """The CARL-SSL backbone (architecture of the weights file's ``config``; ``model_args`` /
    ``model_kwargs`` go to :class:`~carl_geo.models.CARL`), downloading the checkpoint first if it is missing
    (``carl_geo.weights.ensure_weights``)."""
    spec = get_weights_file(CARL_SSL.name)
    bar = _terminal_progress() if progress else None
    try:
        path = ensure_weights(spec, progress=bar, log=bar.log if bar is not None else None)
    finally:
        if bar is not None:
            bar.close()
    model = CARL(get_config(spec.config), *model_args, **(model_kwargs or {}))
    load_backbone_weights(model, backbone_state_dict(read_checkpoint(path)["state_dict"], which))
    return model


def _terminal_progress() -> Any:
    from carl_geo.progress_bar import ProgressBar

    return ProgressBar("CARL-SSL weights", "B", unit_scale=True, unit_divisor=1024)


def carl(weights: Any = None, *args: Any, **kwargs: Any) -> CARL:
    """CARL backbone, published configuration (spectral 384/8 blocks/8 queries, patch 8,
    EVA02-base spatial encoder truncated to 8 blocks).

    If you use this model in your research, please cite https://arxiv.org/abs/2504.19223.

    Args:
        weights: ``CARL_Weights.CARL_SSL`` (downloaded into the cache on first use, see module docs) or None.
        *args, **kwargs: passed on to :class:`~carl_geo.models.CARL` (e.g. ``spatial_init="timm"``), as
            timm's and torchgeo's builders do.
    """
    if weights is not None:
        return _load_published(model_args=args, model_kwargs=kwargs)
    return CARL(published_config(), *args, **kwargs)


def carl_tiny(weights: Any = None, *args: Any, **kwargs: Any) -> CARL:
    """A tiny CARL (spectral 64 wide, EVA02 narrowed to 128 wide, 2 blocks) for tests and CPU demos.
    No published weights exist for it; ``*args, **kwargs`` go to :class:`~carl_geo.models.CARL`."""
    if weights is not None:
        raise CarlGeoError("carl_tiny has no published weights; use weights=None")
    return CARL(tiny_config(), *args, **kwargs)


_weights_enums: tuple[type, type] | None = None


def weights_enums() -> tuple[type, type]:
    """``(CARL_Weights, CARLTiny_Weights)``: torchgeo ``WeightsEnum`` classes of the published
    CARL-SSL checkpoint and of the tiny config (no published weights). Built on first use
    (torchvision import)."""
    global _weights_enums
    if _weights_enums is None:
        from torchvision.models._api import Weights, WeightsEnum

        class CARL_Weights(WeightsEnum):  # type: ignore[misc]
            """CARL-SSL weights (IMSY-DKFZ, ICLR 2026), wavelength-conditioned, any band count."""

            CARL_SSL = Weights(url=PUBLISHED_URL, transforms=ImageStandardize(), meta=dict(CARL_META))

            def get_state_dict(self, progress: bool = True, *args: Any, **kwargs: Any) -> dict[str, Tensor]:
                """The backbone state dict (the checkpoint is downloaded on first use)."""
                return _load_published(progress=progress).state_dict()

        class CARLTiny_Weights(WeightsEnum):  # type: ignore[misc]
            """No published weights exist for the tiny CARL."""

        _weights_enums = (CARL_Weights, CARLTiny_Weights)
    return _weights_enums


def register_with_torchgeo() -> bool:
    """Add ``carl`` and ``carl_tiny`` to torchgeo's model registry; False if torchgeo is absent.

    Set ``CARL_GEO_NO_TORCHGEO=1`` to skip (saves torchgeo's import time in tools that do not
    need its registry)."""
    if os.environ.get("CARL_GEO_NO_TORCHGEO") or importlib.util.find_spec("torchgeo") is None:
        return False
    from torchgeo.models import api

    enum, tiny_enum = weights_enums()
    api._model.setdefault("carl", carl)
    api._model.setdefault("carl_tiny", carl_tiny)
    api._model_weights.setdefault("carl", enum)
    api._model_weights.setdefault(carl, enum)
    api._model_weights.setdefault("carl_tiny", tiny_enum)
    api._model_weights.setdefault(carl_tiny, tiny_enum)
    return True
