"""Pretrained timm weights for CARL's encoders, as upstream initialises them, without surprises.

Upstream CARL builds its spatial encoder with ``timm.create_model(..., pretrained=True)``
(EVA-02-B, ``eva02_base_patch14_224.mim_in22k``) and copies the first blocks of DINOv2
(``vit_small_patch14_dinov2.lvd142m`` for a 384-wide spectral encoder, ``vit_base_...`` for 768)
into its spectral encoder. carl_geo does the same on request only. An *init source* is:

* ``None`` or ``"random"``: random initialisation (the default; nothing is read or downloaded);
* ``"timm"``: timm's pretrained weights, from the local Hugging Face cache or downloaded once
  from the Hugging Face Hub (needs the internet the first time);
* a path to a local weights file (``.safetensors``, ``.pth``/``.bin`` state dict) in timm's
  layout, passed to timm as ``pretrained_cfg_overlay=dict(file=path)`` (read with
  ``weights_only=True``).

Failures are one line: :class:`FileNotFoundError` when the weights cannot be found or fetched
(offline), :class:`ValueError` when they do not fit the architecture.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import timm
from torch import nn

from carl_geo.errors import CarlGeoError

RANDOM = "random"
TIMM = "timm"


def normalize_source(source: str | os.PathLike | None) -> str | None:
    """``None`` for random initialisation, ``"timm"``, or an absolute file path.

    Raises:
        FileNotFoundError: a path that is not a file.
    """
    if source is None or str(source).strip() in ("", RANDOM, "none", "None"):
        return None
    if str(source) == TIMM:
        return TIMM
    path = Path(source).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"pretrained weights file not found: {source} (give a timm weights file, "
                                f"'{TIMM}' for timm's download, or '{RANDOM}')")
    return str(path.resolve())


def pretrained_name(model_name: str) -> str:
    """The timm name with its pretrained tag: ``timm/eva02_base_patch14_224.mim_in22k`` ->
    ``eva02_base_patch14_224.mim_in22k`` (no tag: timm's default weights of that architecture)."""
    return model_name.split("/", 1)[1] if model_name.startswith("timm/") else model_name


@contextmanager
def _hub_offline_if_asked() -> Iterator[None]:
    """With ``CARL_GEO_OFFLINE`` set, Hugging Face Hub downloads are off too (only its cache is read),
    so an offline run fails at once instead of retrying for about a minute."""
    from carl_geo.weights.store import offline

    if not offline():
        yield
        return
    try:
        from huggingface_hub import constants
    except ImportError:
        yield
        return
    old = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = old


def create_pretrained(model_name: str, source: str, **kwargs: Any) -> nn.Module:
    """``timm.create_model(model_name, pretrained=True, **kwargs)`` from ``source`` (``"timm"`` or a
    file path, see :func:`normalize_source`), with one-line errors.

    Raises:
        FileNotFoundError: the weights are neither in the local cache nor downloadable.
        ValueError: the weights do not fit the requested architecture.
    """
    name = pretrained_name(model_name)
    if source != TIMM:
        kwargs["pretrained_cfg_overlay"] = dict(file=source)
    where = "the Hugging Face Hub" if source == TIMM else source
    try:
        with _hub_offline_if_asked():
            return timm.create_model(name, pretrained=True, **kwargs)
    except RuntimeError as e:  # torch's load_state_dict: missing keys / size mismatch
        first = " ".join(str(e).split())[:300]
        raise CarlGeoError(f"the timm weights of {name} from {where} do not fit this encoder ({first}); pretrained "
                         "weights exist only for the unmodified architecture (e.g. the published config)") from None
    except (OSError, ConnectionError) as e:  # huggingface_hub's errors derive from OSError
        if source != TIMM:
            raise FileNotFoundError(f"cannot read timm weights {source}: {' '.join(str(e).split())[:200]}") from None
        raise FileNotFoundError(
            f"cannot fetch the timm weights of {name} from the Hugging Face Hub (offline?): download them once "
            f"where the internet is reachable (they are cached in ~/.cache/huggingface), or pass a local file "
            f"(timm's model.safetensors of {name}) instead of '{TIMM}'") from None
