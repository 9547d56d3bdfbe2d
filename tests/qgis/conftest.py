"""Fixtures for the QGIS plugin tests: one real headless QGIS per session, the plugin installed
from its ZIP into a throw-away QGIS profile, and small rasters/models made with carl_geo.

These tests need Debian's python3-qgis: run them with ``bash scripts/run_qgis_tests.sh`` (or
``.venv-qgis/bin/python -m pytest tests/qgis`` after ``scripts/setup_qgis_env.sh``). In a Python
without ``qgis`` every test module here skips itself (``pytest.importorskip``); nothing in this
file imports qgis at module level.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from qgis_helpers import CLASS_COLORS, CLASS_NAMES, RGBN, synthetic_scene, write_raster

ROOT = Path(__file__).resolve().parents[2]
PLUGIN_SOURCE = ROOT / "qgis_plugin"


def pytest_configure(config: pytest.Config) -> None:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    os.environ.setdefault("MPLBACKEND", "Agg")
    # Debian's matplotlib toolkits next to the venv's matplotlib: harmless, but noisy.
    config.addinivalue_line("filterwarnings", "ignore:Unable to import Axes3D:UserWarning")


@pytest.fixture(scope="session")
def qgis_profile(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``<tmp>/profiles/default``: the QGIS settings folder of this session (never the user's)."""
    path = tmp_path_factory.mktemp("qgis") / "profiles" / "default"
    path.mkdir(parents=True)
    return path


@pytest.fixture(scope="session")
def qgis_app(qgis_profile: Path) -> Iterator[Any]:
    """A started QgsApplication (no GUI) with the Processing framework initialised."""
    from qgis.core import QgsApplication

    app = QgsApplication([], False, str(qgis_profile))
    QgsApplication.setPrefixPath("/usr", True)
    app.initQgis()
    python_dir = Path(QgsApplication.pkgDataPath()) / "python"  # pyplugin_installer, and processing in plugins/
    for path in (python_dir, python_dir / "plugins"):
        if str(path) not in sys.path:
            sys.path.append(str(path))
    from processing.core.Processing import Processing

    Processing.initialize()
    yield app
    Processing.deinitialize()


@pytest.fixture(scope="session")
def plugin_zip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The plugin ZIP built by ``qgis_plugin/build_zip.py``."""
    sys.path.insert(0, str(PLUGIN_SOURCE))
    try:
        import build_zip
    finally:
        sys.path.remove(str(PLUGIN_SOURCE))
    return build_zip.build_zip(tmp_path_factory.mktemp("dist"))


@pytest.fixture(scope="session")
def installed_plugin(qgis_app: Any, qgis_profile: Path, plugin_zip: Path) -> Any:
    """The plugin unzipped into ``<profile>/python/plugins`` with QGIS's own installer function
    and started the way ``qgis_process`` starts plugins (``qgis.utils.startProcessingPlugin``).
    Returns the plugin object."""
    import qgis.utils
    from pyplugin_installer.unzip import unzip

    assert "carl_qgis" not in sys.modules, "the plugin must come from the ZIP, not the source tree"
    plugins_dir = qgis_profile / "python" / "plugins"
    unzip(str(plugin_zip), str(plugins_dir))
    qgis.utils.plugin_paths.append(str(plugins_dir))
    sys.path.insert(0, str(plugins_dir))
    qgis.utils.updateAvailablePlugins()
    assert qgis.utils.loadPlugin("carl_qgis")
    assert qgis.utils.startProcessingPlugin("carl_qgis")
    return qgis.utils.plugins["carl_qgis"]


@pytest.fixture(scope="session")
def carl_provider(installed_plugin: Any) -> Any:
    from qgis.core import QgsApplication

    provider = QgsApplication.processingRegistry().providerById("carl")
    assert provider is not None
    return provider


# ---------------------------------------------------------------------------------------------
# data made with carl_geo / rasterio


@pytest.fixture(scope="session")
def scene_tif(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_raster(tmp_path_factory.mktemp("data") / "scene_rgbn.tif", synthetic_scene())


@pytest.fixture(scope="session")
def seg_model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 3-class tiny CARL segmentation bundle (random weights, seed 0) for R, G, B, NIR."""
    import carl_geo
    import torch

    torch.manual_seed(0)
    model = carl_geo.CARLSegmenter(carl_geo.CARL(carl_geo.tiny_config()), len(CLASS_NAMES)).eval()
    sensor = carl_geo.get_sensor(RGBN)
    bundle = carl_geo.make_bundle(model, class_names=CLASS_NAMES, colors=CLASS_COLORS,
                                  wavelengths=sensor.wavelengths, band_names=sensor.band_names, sensor=RGBN)
    return carl_geo.save_bundle(bundle, tmp_path_factory.mktemp("models") / "tiny_seg.pt")


@pytest.fixture(scope="session")
def features_model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny CARL backbone saved as a features bundle (D = 128)."""
    import carl_geo
    import torch

    torch.manual_seed(1)
    bundle = carl_geo.make_bundle(carl_geo.CARL(carl_geo.tiny_config()).eval())
    return carl_geo.save_bundle(bundle, tmp_path_factory.mktemp("models") / "tiny_features.pt")
