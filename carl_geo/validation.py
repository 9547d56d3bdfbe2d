"""Input checks shared by every entry point: the CLI, the Python API (``CARL.forward``,
``predict_raster``), the trainers and the QGIS plugin.

* :func:`check_wavelength_list`: one centre wavelength per band, in µm: numbers (not None, not
  text), finite, positive, distinct, and not nanometres by mistake;
* :func:`check_wavelength_tensor`: the same rules on a (B, C) tensor (bands masked out by a
  ``band_mask`` are ignored);
* :func:`check_image`: a (B, C, H, W) floating-point tensor with no empty dimension, in the
  model's dtype (unless autocast is on).

Every failure is a :class:`~carl_geo.errors.WavelengthError` or
:class:`~carl_geo.errors.InputError` whose message says what to pass instead. Imports torch only
inside the tensor checks.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from carl_geo.errors import InputError, WavelengthError, option

#: Wavelengths above this value (µm) are taken to be nanometres by mistake.
MAX_WAVELENGTH_UM = 100.0

#: Wavelength (µm) written into padded band slots of mixed-band-count batches (models/carl.py pads with it too,
#: datasets/collate.py fills with it); any finite value works since those bands are masked.
PAD_WAVELENGTH_UM = 1.0


def _example() -> str:
    return option("wavelengths", "0.49,0.56,0.665", "[0.49, 0.56, 0.665]")


def check_wavelength_list(values: Any) -> list[float]:
    """``values`` (one per band, µm) as a list of floats.

    Raises:
        WavelengthError: None, text, an empty list, a non-number, NaN/inf, a value <= 0, a value
            that looks like nanometres, or the same wavelength twice.
    """
    if values is None:
        raise WavelengthError("no wavelengths were given: give one centre wavelength (µm) per band, "
                              f"e.g. {_example()}")
    if isinstance(values, (str, bytes)):
        raise WavelengthError(f"wavelengths must be a list of numbers (µm), not the text {values!r}; "
                              f"e.g. {_example()}")
    if hasattr(values, "tolist"):  # numpy array / tensor
        values = values.tolist()
    try:
        wl = [float(w) for w in values]
    except (TypeError, ValueError):
        raise WavelengthError(f"wavelengths must be numbers (µm), got {values!r}") from None
    if not wl:
        raise WavelengthError("the wavelength list is empty; give one wavelength (µm) per band")
    bad = [(i, w) for i, w in enumerate(wl) if not math.isfinite(w)]
    if bad:
        raise WavelengthError(f"wavelength of band {bad[0][0] + 1} is {bad[0][1]}; give a finite value (µm) per band")
    bad = [(i, w) for i, w in enumerate(wl) if w <= 0]
    if bad:
        raise WavelengthError(f"wavelengths must be positive (µm): band {bad[0][0] + 1} has {bad[0][1]:g}")
    if max(wl) > MAX_WAVELENGTH_UM:
        raise WavelengthError(f"wavelengths must be in micrometres, got values up to {max(wl):g}; "
                              "these look like nanometres: divide by 1000")
    _check_distinct(wl)
    return wl


def _check_distinct(wl: Sequence[float]) -> None:
    first: dict[float, int] = {}
    for i, w in enumerate(wl):
        if w in first:
            raise WavelengthError(
                f"bands {first[w] + 1} and {i + 1} both have the wavelength {w:g} µm; each band needs its own "
                "centre wavelength (a repeated band adds nothing: leave one out)")
        first[w] = i


def check_wavelength_tensor(wl: Any, band_mask: Any = None) -> None:
    """The rules of :func:`check_wavelength_list` on a (B, C) float tensor; bands whose
    ``band_mask`` (B, C) is False (padding) are not checked."""
    import torch

    w = wl.detach().float()
    valid = torch.ones_like(w, dtype=torch.bool) if band_mask is None else band_mask.to(w.device).bool()
    if not torch.isfinite(w[valid]).all():
        raise WavelengthError("wavelengths contain NaN or inf; give a finite value (µm) per band")
    if (w[valid] <= 0).any():
        raise WavelengthError(f"wavelengths must be positive (µm), got {w[valid].min().item():g}")
    if valid.any() and w[valid].max() > MAX_WAVELENGTH_UM:
        raise WavelengthError(f"wavelengths must be in micrometres, got values up to {w[valid].max().item():g}; "
                              "these look like nanometres: divide by 1000")
    if w.shape[1] > 1:
        s = torch.where(valid, w, torch.nan).sort(dim=1).values  # NaN (masked) sort last, never equal
        same = s[:, 1:] == s[:, :-1]
        if same.any():
            row = int(same.any(dim=1).nonzero()[0])
            _check_distinct([float(v) for v, ok in zip(w[row].tolist(), valid[row].tolist()) if ok])


def as_wavelength_tensor(wavelengths: Any, device: Any = None) -> Any:
    """Wavelengths (C,) or (B, C) as a float tensor on ``device``; None, text and non-numbers are
    refused with a :class:`~carl_geo.errors.WavelengthError` (torch would say "Could not infer dtype")."""
    import torch

    if wavelengths is None or isinstance(wavelengths, (str, bytes)):
        check_wavelength_list(wavelengths)  # raises with the message
    if isinstance(wavelengths, torch.Tensor):
        if not (wavelengths.is_floating_point() or wavelengths.dtype in (torch.int32, torch.int64)):
            raise WavelengthError(f"wavelengths must be a float tensor (µm), got dtype {wavelengths.dtype}")
        return wavelengths.to(device) if device is not None else wavelengths
    try:
        return torch.as_tensor(wavelengths, dtype=torch.float32, device=device)
    except (TypeError, ValueError, RuntimeError):
        raise WavelengthError(f"wavelengths must be numbers (µm), one per band, got {wavelengths!r}") from None


def check_image(img: Any, weight_dtype: Any = None) -> None:
    """``img`` must be a (B, C, H, W) floating-point tensor with B, C, H, W >= 1, in
    ``weight_dtype`` (the model's) unless autocast is on.

    Raises:
        InputError: saying how to convert the image.
    """
    import torch

    if not isinstance(img, torch.Tensor):
        raise InputError(f"img must be a torch.Tensor (B, C, H, W), got {type(img).__name__}; "
                         "e.g. torch.from_numpy(array).float()")
    if img.ndim != 4:
        raise InputError(f"img must be (B, C, H, W), got shape {tuple(img.shape)}"
                         + ("; add the batch axis with img[None]" if img.ndim == 3 else ""))
    if min(img.shape) == 0:
        b, c, h, w = img.shape
        raise InputError(f"img has an empty axis: (B, C, H, W) = ({b}, {c}, {h}, {w}); every axis needs at least 1")
    if not img.is_floating_point():
        raise InputError(f"img is {str(img.dtype).replace('torch.', '')}, CARL needs floats normalised per image: "
                         "use carl_geo.transforms.standardize_image(img.float())")
    if weight_dtype is not None and img.dtype != weight_dtype and not _autocast_on(img.device.type):
        have, want = (str(d).replace("torch.", "") for d in (img.dtype, weight_dtype))
        raise InputError(f"img is {have} but the model's weights are {want}: pass img.to(torch.{want}) "
                         f"(or run under torch.autocast)")


def _autocast_on(device_type: str) -> bool:
    import torch

    try:
        return bool(torch.is_autocast_enabled(device_type))
    except TypeError:  # older torch: no device argument
        return bool(torch.is_autocast_enabled())
