"""Band selection and wavelengths (µm) from explicit lists, sensor presets and file metadata."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

import carl_geo
from carl_geo.io.band_metadata import (
    file_band_wavelengths,
    parse_wavelength_list,
    resolve_band_selection,
    resolve_wavelengths,
)

S2 = carl_geo.get_sensor("sentinel2_l1c")


def write_tif(path: Path, count: int, *, descriptions=None, imagery_um=None, tags=None, driver="GTiff") -> Path:
    profile = dict(driver=driver, width=8, height=6, count=count, dtype="uint16", crs="EPSG:32632",
                   transform=from_origin(600000, 5000000, 10, 10))
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(np.arange(count * 48, dtype="uint16").reshape(count, 6, 8))
        for b, d in enumerate(descriptions or [], start=1):
            dst.set_band_description(b, d)
        for b, w in enumerate(imagery_um or [], start=1):
            dst.update_tags(b, ns="IMAGERY", CENTRAL_WAVELENGTH_UM=str(w))
        if tags:
            dst.update_tags(**tags)
    return path


def test_gdal_imagery_central_wavelength(tmp_path: Path) -> None:
    path = write_tif(tmp_path / "a.tif", 3, imagery_um=[0.49, 0.56, 0.665])
    sel = resolve_wavelengths(path)
    assert sel.band_indexes == [1, 2, 3]
    assert sel.wavelengths == pytest.approx([0.49, 0.56, 0.665])
    assert sel.source == "metadata"
    assert file_band_wavelengths(path) == pytest.approx([0.49, 0.56, 0.665])


def test_envi_wavelengths_in_nanometres(tmp_path: Path) -> None:
    path = tmp_path / "cube.envi"
    profile = dict(driver="ENVI", width=5, height=4, count=3, dtype="float32", crs="EPSG:4326",
                   transform=from_origin(10.0, 50.0, 0.001, 0.001))
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(np.ones((3, 4, 5), "float32"))
        dst.update_tags(ns="ENVI", wavelength="{450.5, 551.0, 2200}", wavelength_units="Nanometers")
    sel = resolve_wavelengths(path)
    assert sel.wavelengths == pytest.approx([0.4505, 0.551, 2.2])


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_handwritten_envi_header_in_micrometres(tmp_path: Path) -> None:
    data = tmp_path / "raw.img"
    np.arange(2 * 3 * 4, dtype="<f4").tofile(data)
    (tmp_path / "raw.hdr").write_text(
        "ENVI\nsamples = 4\nlines = 3\nbands = 2\nheader offset = 0\nfile type = ENVI Standard\n"
        "data type = 4\ninterleave = bsq\nbyte order = 0\n"
        "wavelength units = Micrometers\nwavelength = { 0.8420 , 1.6100 }\n")
    assert resolve_wavelengths(data).wavelengths == pytest.approx([0.842, 1.61])


@pytest.mark.parametrize(("text", "units", "expected"), [
    ("{450, 550}", "Nanometers", [0.45, 0.55]),
    ("0.49,0.56", None, [0.49, 0.56]),
    ("490 560", None, [0.49, 0.56]),  # no units, values > 100: nanometres
    ("{0.49, 0.56}", "micrometers", [0.49, 0.56]),
    ("{10000, 5000}", "Wavenumber", [1.0, 2.0]),
    ([0.0015], "mm", [1.5]),
])
def test_parse_wavelength_list(text, units, expected) -> None:
    assert parse_wavelength_list(text, units) == pytest.approx(expected)


def test_band_descriptions_with_sensor_preset(tmp_path: Path) -> None:
    # 4 bands named like Sentinel-2: matched by name although the preset has 12/13 bands
    path = write_tif(tmp_path / "s2.tif", 4, descriptions=["B02", "B03", "B04", "B8A"])
    sel = resolve_wavelengths(path, sensor="sentinel2_l2a")
    assert sel.wavelengths == pytest.approx([0.490, 0.560, 0.665, 0.865])
    assert sel.band_names == ["B02", "B03", "B04", "B8A"]
    assert sel.source == "sensor" and sel.sensor == "sentinel2_l2a"
    # without a sensor: only the Sentinel-2 presets fit these names and they agree
    auto = resolve_wavelengths(path)
    assert auto.wavelengths == pytest.approx([0.490, 0.560, 0.665, 0.865]) and auto.source == "metadata"


def test_ambiguous_band_names_need_a_preset(tmp_path: Path) -> None:
    path = write_tif(tmp_path / "l.tif", 3, descriptions=["B2", "B3", "B4"])  # S2, Landsat 7 and 8 all fit
    with pytest.raises(ValueError, match="no wavelengths"):
        resolve_wavelengths(path)
    tagged = write_tif(tmp_path / "l8.tif", 3, descriptions=["B2", "B3", "B4"],
                       tags={"CARL_SENSOR_PRESET": "landsat8_oli"})
    assert resolve_wavelengths(tagged).wavelengths == pytest.approx([0.482, 0.561, 0.655])
    # the model's sensor is a hint too
    bundle_like = type("B", (), {"wavelengths": None, "band_names": None, "sensor": "landsat7_etm"})()
    assert resolve_wavelengths(path, fallback=bundle_like).wavelengths == pytest.approx([0.560, 0.660, 0.835])


def test_resolution_order(tmp_path: Path) -> None:
    path = write_tif(tmp_path / "o.tif", 4, imagery_um=[0.4, 0.5, 0.6, 0.7])
    assert resolve_wavelengths(path, wavelengths=[1, 1.1, 1.2, 1.3]).wavelengths == [1, 1.1, 1.2, 1.3]
    rgbn = resolve_wavelengths(path, sensor="rgbn")  # preset beats metadata (positional: 4 == 4 bands)
    assert rgbn.wavelengths == list(carl_geo.get_sensor("rgbn").wavelengths) and rgbn.source == "sensor"
    assert resolve_wavelengths(path).wavelengths == pytest.approx([0.4, 0.5, 0.6, 0.7])
    assert resolve_wavelengths(path, fallback=[2.0, 2.1, 2.2, 2.3]).source == "metadata"
    bare = write_tif(tmp_path / "bare.tif", 4)
    fb = resolve_wavelengths(bare, fallback=[2.0, 2.1, 2.2, 2.3])
    assert fb.wavelengths == [2.0, 2.1, 2.2, 2.3] and fb.source == "model"


def test_count_mismatch_messages(tmp_path: Path) -> None:
    path = write_tif(tmp_path / "m.tif", 12)
    with pytest.raises(ValueError, match="has 12 bands but 13 wavelengths were given"):
        resolve_wavelengths(path, wavelengths=list(S2.wavelengths))
    with pytest.raises(ValueError, match="sensor preset 'sentinel2_l1c' has 13 bands"):
        resolve_wavelengths(path, sensor="sentinel2_l1c")
    with pytest.raises(ValueError, match="trained with 13 bands"):
        resolve_wavelengths(path, fallback=carl_geo.ModelBundle(
            model=carl_geo.CARLEmbedder(carl_geo.CARL(carl_geo.tiny_config())), wavelengths=list(S2.wavelengths)))
    with pytest.raises(ValueError, match="nanometres"):
        resolve_wavelengths(path, wavelengths=[490.0] * 12)
    with pytest.raises(ValueError, match="3 bands .* were selected .* but 2 wavelengths"):
        resolve_wavelengths(path, bands=[1, 2, 3], wavelengths=[0.5, 0.6])


def test_band_selection_by_index_and_name(tmp_path: Path) -> None:
    path = write_tif(tmp_path / "s2full.tif", 13, descriptions=list(S2.band_names))
    idx, wl, names = resolve_band_selection(path, bands=["B04", "b3", 2])
    assert idx == [4, 3, 2] and names == ["B04", "B03", "B02"]
    assert wl == pytest.approx([0.665, 0.560, 0.490])
    with pytest.raises(ValueError, match="band 14 does not exist"):
        resolve_wavelengths(path, bands=[14])
    with pytest.raises(ValueError, match="no band named 'B99'"):
        resolve_wavelengths(path, bands=["B99"])
    # no descriptions, but the preset has as many bands: names go through the preset
    plain = write_tif(tmp_path / "plain.tif", 13)
    sel = resolve_wavelengths(plain, sensor="s2_l1c", bands=["B8A", "B11"])
    assert sel.band_indexes == [9, 12] and sel.wavelengths == pytest.approx([0.865, 1.610])


def test_bundle_bands_selected_by_name(tmp_path: Path) -> None:
    path = write_tif(tmp_path / "s2full.tif", 13, descriptions=list(S2.band_names))
    bundle = carl_geo.ModelBundle(model=carl_geo.CARLEmbedder(carl_geo.CARL(carl_geo.tiny_config())),
                                  wavelengths=[0.842, 0.665], band_names=["B08", "B04"])
    sel = resolve_wavelengths(path, fallback=bundle)
    assert sel.band_indexes == [8, 4] and sel.wavelengths == pytest.approx([0.842, 0.665])


def test_sample_scene_metadata() -> None:
    from carl_geo.sample_data import nc_landsat7

    sel = resolve_wavelengths(nc_landsat7().image)
    assert sel.wavelengths == pytest.approx(list(carl_geo.get_sensor("landsat7_etm").wavelengths))


def test_missing_file() -> None:
    with pytest.raises(FileNotFoundError, match="raster not found"):
        resolve_wavelengths("/nonexistent/scene.tif")
