"""Which PyTorch build to install: CPU by default, CUDA when an NVIDIA GPU and driver are found.

PyTorch publishes CPU and CUDA builds on its own package index
(``https://download.pytorch.org/whl/<cpu|cuXYZ>``); the CUDA build must not be newer than the
driver supports. The NVIDIA driver is asked with ``nvidia-smi`` (installed with every driver).
Imports nothing from QGIS.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass

PYTORCH_INDEX = "https://download.pytorch.org/whl"
PYPI_INDEX = "https://pypi.org/simple"
#: (lowest driver version, CUDA build tag), newest first. A CUDA 12.x/13.x build needs a driver of
#: at least this version (NVIDIA's CUDA toolkit release notes, "minimum required driver").
CUDA_BUILDS: tuple[tuple[tuple[int, int], str, str], ...] = (
    ((580, 0), "cu130", "CUDA 13.0"),
    ((570, 0), "cu128", "CUDA 12.8"),
    ((560, 0), "cu126", "CUDA 12.6"),
)
PREFERENCES = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class NvidiaGpu:
    name: str
    driver: str

    @property
    def driver_version(self) -> tuple[int, int]:
        parts = (self.driver.split(".") + ["0"])[:2]
        try:
            return int(parts[0]), int(parts[1])
        except ValueError:
            return 0, 0


@dataclass(frozen=True)
class TorchChoice:
    """The PyTorch build to install.

    Attributes:
        variant: ``"cpu"``, ``"cuXYZ"`` or ``"default"`` (the build PyPI serves, e.g. on macOS).
        index_url: the package index holding it (None: PyPI alone).
        reason: one line for the user ("NVIDIA RTX 4000, driver 570.86: CUDA 12.8 build").
        fallback: what to install if this build fails to install (CUDA -> CPU), or None.
    """

    variant: str
    index_url: str | None
    reason: str
    fallback: TorchChoice | None = None

    @property
    def label(self) -> str:
        return "CPU" if self.variant == "cpu" else ("PyPI default" if self.variant == "default"
                                                    else f"CUDA ({self.variant})")


def detect_nvidia(run: Callable[..., subprocess.CompletedProcess] = subprocess.run) -> NvidiaGpu | None:
    """The first NVIDIA GPU and its driver version from ``nvidia-smi``, or None (no GPU, no driver)."""
    exe = shutil.which("nvidia-smi")
    if exe is None and sys.platform.startswith("win"):
        exe = shutil.which(r"C:\Windows\System32\nvidia-smi.exe")
    if exe is None:
        return None
    try:
        out = run([exe, "--query-gpu=name,driver_version", "--format=csv,noheader"], capture_output=True,
                  text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0 or not out.stdout.strip():
        return None
    name, _, driver = out.stdout.strip().splitlines()[0].rpartition(",")
    return NvidiaGpu(name.strip(), driver.strip())


def cpu_choice(reason: str) -> TorchChoice:
    return TorchChoice("cpu", f"{PYTORCH_INDEX}/cpu", reason)


def choose_torch(preference: str = "auto", platform: str | None = None,
                 gpu: NvidiaGpu | None | Callable[[], NvidiaGpu | None] = detect_nvidia) -> TorchChoice:
    """The build for ``preference`` (``auto``/``cpu``/``cuda``) on ``platform`` (default ``sys.platform``).

    ``auto``: CUDA when an NVIDIA GPU with a recent enough driver is found (CPU as fallback), else
    CPU. macOS: PyPI's build (CPU + Apple GPU). ``cuda`` without a usable driver falls back to CPU
    and says why.
    """
    if preference not in PREFERENCES:
        raise ValueError(f"PyTorch build must be one of {PREFERENCES}, got {preference!r}")
    platform = sys.platform if platform is None else platform
    if platform == "darwin":
        return TorchChoice("default", None, "macOS: the PyPI build (CPU and Apple GPU)")
    if preference == "cpu":
        return cpu_choice("CPU build (chosen)")
    found = gpu() if callable(gpu) else gpu
    if found is None:
        return cpu_choice("no NVIDIA GPU/driver found (nvidia-smi): CPU build")
    for (major, minor), tag, cuda in CUDA_BUILDS:
        if found.driver_version >= (major, minor):
            return TorchChoice(tag, f"{PYTORCH_INDEX}/{tag}",
                               f"{found.name}, driver {found.driver}: {cuda} build",
                               fallback=cpu_choice(f"the {cuda} build could not be installed: CPU build"))
    oldest = CUDA_BUILDS[-1][0]
    return cpu_choice(f"{found.name}, driver {found.driver} is older than {oldest[0]}.{oldest[1]:02d} "
                      "(needed by current CUDA builds): CPU build; update the NVIDIA driver to use the GPU")
