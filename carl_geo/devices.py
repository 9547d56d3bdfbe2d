"""The one place that turns a device name into a torch device: :func:`resolve_device`
(the predictor, polygon training and the QGIS plugin use it), that says whether a Lightning
accelerator name runs on a CUDA GPU: :func:`uses_cuda` (the GEO-Bench runner), what the CPU's
matrix units are: :func:`torch_cpu_check` (bf16 and int8 choices of ``carl_geo.inference``), and how much memory
the machine can still give: :func:`available_memory` (polygon training's window check)."""

from __future__ import annotations

import torch

from carl_geo.errors import CarlGeoError, option


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` -> cuda, else mps, else cpu; an explicit device must be available.

    Raises:
        CarlGeoError: unknown or unavailable device (names the option to change).
    """
    name = str(device).lower()
    mps = getattr(torch.backends, "mps", None)
    mps_ok = bool(mps is not None and mps.is_available())
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "mps" if mps_ok else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise CarlGeoError(f"unknown device {device!r}; use auto, cpu, cuda, cuda:N or mps") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise CarlGeoError("device 'cuda' was asked for but torch sees no CUDA GPU; "
                           f"use {option('device', 'cpu', repr('cpu'))} or auto")
    if dev.type == "mps" and not mps_ok:
        raise CarlGeoError("device 'mps' was asked for but it is not available; "
                           f"use {option('device', 'cpu', repr('cpu'))} or auto")
    if dev.type not in ("cpu", "cuda", "mps"):
        raise CarlGeoError(f"unsupported device {device!r}; use auto, cpu, cuda or mps")
    return dev


def uses_cuda(accelerator: str) -> bool:
    """Whether a Lightning ``accelerator`` name (``"auto"``, ``"gpu"``, ``"cuda"``, ``"cpu"``, ...) runs on a
    CUDA GPU: one of the first three, and torch sees a CUDA device."""
    return accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available()


def torch_cpu_check(name: str) -> bool | None:
    """The answer of torch's private CPU check ``torch.cpu.<name>()`` (``_is_amx_tile_supported``,
    ``_is_avx512_bf16_supported``, ``_is_vnni_supported``, ...), or None when it is missing or fails."""
    check = getattr(getattr(torch, "cpu", None), name, None)
    try:
        return None if check is None else bool(check())
    except Exception:  # private torch helpers: they may change
        return None


def available_memory() -> int | None:
    """Bytes of memory the system can give without swapping now (Linux: ``MemAvailable`` of /proc/meminfo;
    elsewhere psutil's ``available`` when psutil is installed), or None when unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        import psutil
    except ImportError:
        return None
    return int(psutil.virtual_memory().available)
