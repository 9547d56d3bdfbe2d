"""The QGIS algorithms' precision choice (int8 on the CPU) and tiling defaults, in a real headless QGIS."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("qgis.core", reason="needs QGIS's Python bindings (Debian python3-qgis); "
                                        "run scripts/run_qgis_tests.sh")

pytestmark = pytest.mark.qgis


def _alg(alg_id: str) -> Any:
    from qgis.core import QgsApplication

    return QgsApplication.processingRegistry().createAlgorithmById(alg_id)


def test_precision_choice_and_tiling_defaults(carl_provider: Any) -> None:
    from carl_geo.inference.tiling import DEFAULT_OVERLAP, DEFAULT_TILE_SIZE
    from qgis.core import QgsProcessingParameterDefinition

    for alg_id in ("carl:segmentraster", "carl:extractfeatures", "carl:trainfrompolygons"):
        alg = _alg(alg_id)
        param = alg.parameterDefinition("PRECISION")
        # "auto" (bf16 on a CPU with AMX, else fp32) is the default and comes last: saved indexes keep their meaning
        assert param.options() == ["fp32", "int8", "bf16", "fp16", "auto"] and param.defaultValue() == "auto"
        # 0 / -1: the library's default (None), i.e. from the model's patch size (256 / 16 px at patch 8)
        assert alg.parameterDefinition("TILE_SIZE").defaultValue() == 0
        assert alg.parameterDefinition("OVERLAP").defaultValue() == -1
        assert (DEFAULT_TILE_SIZE, DEFAULT_OVERLAP) == (256, 16)
    assert _alg("carl:trainfrompolygons").parameterDefinition("PRECISION").flags() \
        & QgsProcessingParameterDefinition.FlagAdvanced


def test_segment_raster_int8_matches_library(carl_provider: Any, scene_tif: Path, seg_model_path: Path,
                                             tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime", reason="int8 needs pip install 'carl-geo[int8]' (setup_qgis_env.sh does)")
    import processing
    import rasterio
    from carl_geo import load_bundle
    from carl_geo.inference import predict_raster

    params = {"INPUT": str(scene_tif), "MODEL": str(seg_model_path), "SENSOR": "auto", "TILE_SIZE": 64,
              "OVERLAP": 16, "BATCH_SIZE": 2, "DEVICE": "auto", "PRECISION": "int8", "OUTPUT_TYPE": "probabilities"}
    out = tmp_path / "p8.tif"
    processing.run("carl:segmentraster", {**params, "OUTPUT": str(out)})
    ref8, ref32 = tmp_path / "lib8.tif", tmp_path / "lib32.tif"
    bundle = load_bundle(seg_model_path)
    kw = dict(output="probabilities", tile_size=64, overlap=16, batch_size=2)
    predict_raster(bundle, scene_tif, ref8, precision="int8", **kw)
    predict_raster(bundle, scene_tif, ref32, precision="fp32", **kw)
    with rasterio.open(out) as a, rasterio.open(ref8) as b, rasterio.open(ref32) as c:
        got, lib8, lib32 = a.read(), b.read(), c.read()
    np.testing.assert_allclose(got, lib8, atol=1e-6)  # the algorithm ran the library's int8 path
    assert 0 < np.abs(got - lib32).max() < 0.05
