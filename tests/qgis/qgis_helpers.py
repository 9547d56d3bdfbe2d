"""Helpers of the QGIS plugin tests (no qgis import at module level)."""

from __future__ import annotations

import shutil
import subprocess
import warnings
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
OUTPUTS = ROOT / "outputs"
CLASS_NAMES = ["water", "forest", "urban"]
CLASS_COLORS = [(40, 90, 210), (20, 120, 40), (200, 40, 40)]
RGBN = "rgbn"  # carl_geo.sensors preset of the synthetic rasters
SYSTEM_PYTHON = "/usr/bin/python3"  # Debian's Python, the one QGIS embeds (no torch, no carl_geo)


def write_raster(path: Path, data: np.ndarray, crs: str = "EPSG:32633", origin: tuple[float, float] = (500000, 4100000),
                 res: float = 10.0, nodata: float | None = None, **tags: Any) -> Path:
    """A GeoTIFF of ``data`` (C, H, W) with a north-up transform at ``origin`` (x, y of the top left)."""
    import rasterio
    from affine import Affine

    c, h, w = data.shape
    profile = dict(driver="GTiff", width=w, height=h, count=c, dtype=data.dtype.name, crs=crs,
                   transform=Affine(res, 0.0, origin[0], 0.0, -res, origin[1]), nodata=nodata)
    with rasterio.open(path, "w", **profile) as ds:
        ds.write(data)
        if tags:
            ds.update_tags(**tags)
    return path


def synthetic_scene(h: int = 80, w: int = 96, seed: int = 0) -> np.ndarray:
    """(4, H, W) float32 reflectances (R, G, B, NIR): water on the left, forest in the middle,
    a bright built-up block on the right, plus noise."""
    rng = np.random.default_rng(seed)
    spectra = {"water": (0.03, 0.05, 0.07, 0.02), "forest": (0.04, 0.08, 0.03, 0.40),
               "urban": (0.25, 0.24, 0.22, 0.30)}
    img = np.empty((4, h, w), np.float32)
    xx = np.arange(w)[None, :].repeat(h, 0)
    yy = np.arange(h)[:, None].repeat(w, 1)
    cls = np.where(xx < w // 3, 0, 1)
    cls[(xx > 2 * w // 3) & (yy > h // 4) & (yy < 3 * h // 4)] = 2
    for i, name in enumerate(spectra):
        img[:, cls == i] = np.asarray(spectra[name], np.float32)[:, None]
    return img + rng.normal(0, 0.01, img.shape).astype(np.float32)


def save_output_copy(path: Path, name: str) -> Path:
    """Copy a file a person should look at to ``outputs/<name>`` (git-ignored)."""
    OUTPUTS.mkdir(exist_ok=True)
    target = OUTPUTS / name
    shutil.copyfile(path, target)
    return target


def render_layer(layer: Any, path: Path, width: int = 480) -> Path:
    """Render one layer with QgsMapRendererParallelJob to a PNG (width px, aspect of the layer)."""
    from qgis.core import QgsMapRendererParallelJob, QgsMapSettings
    from qgis.PyQt.QtCore import QSize
    from qgis.PyQt.QtGui import QColor

    extent = layer.extent()
    height = max(1, round(width * extent.height() / extent.width()))
    settings = QgsMapSettings()
    settings.setLayers([layer])
    settings.setDestinationCrs(layer.crs())
    settings.setExtent(extent)
    settings.setOutputSize(QSize(width, height))
    settings.setBackgroundColor(QColor(255, 255, 255))
    job = QgsMapRendererParallelJob(settings)
    job.start()
    job.waitForFinished()
    image = job.renderedImage()
    assert not image.isNull()
    assert image.save(str(path), "PNG")
    return path


def read_png_rgb(path: Path) -> np.ndarray:
    """(H, W, 3) uint8 of a PNG, read with GDAL's PNG driver through rasterio."""
    import rasterio

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)  # a PNG has no georeference
        with rasterio.open(path) as ds:
            return np.moveaxis(ds.read()[:3], 0, -1)


def share_of_colors(rgb: np.ndarray, colors: list[tuple[int, int, int]], tol: int = 2) -> float:
    """Share of the pixels of ``rgb`` (H, W, 3) within ``tol`` of one of ``colors``."""
    hit = np.zeros(rgb.shape[:2], bool)
    for c in colors:
        hit |= (np.abs(rgb.astype(int) - np.asarray(c)) <= tol).all(-1)
    return float(hit.mean())


def system_python_managed() -> bool:
    """Whether Debian's python3 is externally managed (PEP 668: plain pip install refused)."""
    code = ("import os, sysconfig; "
            "print(os.path.isfile(os.path.join(sysconfig.get_path('stdlib'), 'EXTERNALLY-MANAGED')))")
    return subprocess.run([SYSTEM_PYTHON, "-c", code], capture_output=True, text=True).stdout.strip() == "True"


def system_python_has_carl_geo() -> bool:
    return subprocess.run([SYSTEM_PYTHON, "-c", "import carl_geo"], capture_output=True, cwd="/").returncode == 0


class CancelAfterFirstStep:
    """Factory for a QgsProcessingFeedback that presses Cancel at the first progress report."""

    @staticmethod
    def make() -> Any:
        from qgis.core import QgsProcessingFeedback

        class _Feedback(QgsProcessingFeedback):
            def __init__(self) -> None:
                super().__init__()
                self.reports: list[float] = []

            def setProgress(self, progress: float) -> None:  # noqa: N802 (Qt API)
                super().setProgress(progress)
                self.reports.append(progress)
                self.cancel()

        return _Feedback()


class LogFeedback:
    """Factory for a QgsProcessingFeedback that keeps every line the algorithm logs (``lines``)."""

    @staticmethod
    def make() -> Any:
        from qgis.core import QgsProcessingFeedback

        class _Feedback(QgsProcessingFeedback):
            def __init__(self) -> None:
                super().__init__()
                self.lines: list[str] = []

            def pushInfo(self, info: str) -> None:  # noqa: N802 (Qt API)
                super().pushInfo(info)
                self.lines.append(info)

            def reportError(self, error: str, fatalError: bool = False) -> None:  # noqa: N802,N803 (Qt API)
                super().reportError(error, fatalError)
                self.lines.append(error)

            def pushWarning(self, warning: str) -> None:  # noqa: N802 (Qt API, QGIS >= 3.20)
                super().pushWarning(warning)
                self.lines.append(warning)

        return _Feedback()


def make_wheel(folder: Path, name: str = "carl_tinydep", version: str = "1.0", body: str = "VALUE = 42\n") -> Path:
    """A minimal valid pure-Python wheel ``<name>-<version>-py3-none-any.whl`` (one module) in ``folder``."""
    import base64
    import hashlib
    import zipfile

    dist = f"{name}-{version}"
    files = {f"{name}/__init__.py": body + f"__version__ = {version!r}\n",
             f"{dist}.dist-info/METADATA":
                 f"Metadata-Version: 2.1\nName: {name.replace('_', '-')}\nVersion: {version}\n",
             f"{dist}.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: carl_geo-tests\nRoot-Is-Purelib: true\n"
                                       "Tag: py3-none-any\n"}
    record = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(text.encode())}")
    record.append(f"{dist}.dist-info/RECORD,,")
    out = Path(folder) / f"{dist}-py3-none-any.whl"
    with zipfile.ZipFile(out, "w") as zf:
        for path, text in files.items():
            zf.writestr(path, text)
        zf.writestr(f"{dist}.dist-info/RECORD", "\n".join(record) + "\n")
    return out
