"""SpectralRaster: a torchgeo RasterDataset whose samples carry wavelengths (µm), on real NC pixels."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import rasterio
import torch
from torch.utils.data import DataLoader
from torchgeo.datasets import stack_samples
from torchgeo.samplers import GridGeoSampler, RandomGeoSampler

try:  # torchgeo >= 0.10 names
    from torchgeo.samplers import GriddedPatchSampler, RandomPatchSampler
except ImportError:  # torchgeo 0.8
    GriddedPatchSampler, RandomPatchSampler = GridGeoSampler, RandomGeoSampler

import carl_geo
from carl_geo.datasets import SpectralRaster
from carl_geo.sample_data import nc_landsat7, write_crop

SCENE = nc_landsat7()
ETM = [0.485, 0.56, 0.66, 0.835, 1.65, 2.22]


@pytest.fixture(scope="module")
def crop(tmp_path_factory):
    return write_crop(SCENE, tmp_path_factory.mktemp("crop"), 200, 160, 96)


@pytest.fixture(scope="module")
def bare(crop, tmp_path_factory):
    """The crop's pixels without any band metadata (no descriptions, tags or IMAGERY domain)."""
    path = tmp_path_factory.mktemp("bare") / "bare.tif"
    with rasterio.open(crop.image) as src:
        profile = {k: src.profile[k] for k in ("driver", "width", "height", "count", "dtype", "crs", "transform",
                                               "nodata")}
        data = src.read()
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
    with rasterio.open(path) as check:
        assert check.descriptions == (None,) * 6 and not check.tags(1, ns="IMAGERY")
    return path


def test_wavelengths_from_file_metadata(crop):
    ds = SpectralRaster(crop.image)
    assert ds.wavelengths.dtype == torch.float32
    assert torch.allclose(ds.wavelengths, torch.tensor(ETM))
    assert ds.band_names == ["B1", "B2", "B3", "B4", "B5", "B7"]
    with rasterio.open(crop.image) as src:  # they really come from the IMAGERY domain of the file
        assert [float(src.tags(b, ns="IMAGERY")["CENTRAL_WAVELENGTH_UM"]) for b in src.indexes] == ETM


def test_wavelengths_from_preset_explicit_and_errors(bare):
    with pytest.raises(ValueError, match="no wavelengths"):
        SpectralRaster(bare)
    ds = SpectralRaster(bare, sensor="landsat7_etm")
    assert torch.allclose(ds.wavelengths, torch.tensor(carl_geo.get_sensor("landsat7_etm").wavelengths))
    assert ds.sensor == "landsat7_etm"
    sub = SpectralRaster(bare, sensor="landsat7", bands=["B4", "B3", "B2"])  # alias + names from the preset
    assert sub.band_indexes == [4, 3, 2] and torch.allclose(sub.wavelengths, torch.tensor([0.835, 0.66, 0.56]))
    explicit = SpectralRaster(bare, wavelengths=[0.5, 0.6, 0.7], bands=[1, 2, 3])
    assert explicit.wavelengths.tolist() == pytest.approx([0.5, 0.6, 0.7])
    with pytest.raises(ValueError, match="6 bands but 5 wavelengths"):
        SpectralRaster(bare, wavelengths=[0.5, 0.6, 0.7, 0.8, 0.9])
    with pytest.raises(ValueError, match="nanometres"):
        SpectralRaster(bare, wavelengths=[485, 560, 660, 835, 1650, 2220])


def test_sample_pixels_equal_the_file(crop):
    ds = SpectralRaster(crop.image, bands=[4, 3, 2])
    with rasterio.open(crop.image) as src:
        ref = src.read([4, 3, 2], window=((10, 42), (20, 52))).astype(np.float32)
        x0, y1 = src.transform @ (20, 10)
        x1, y0 = src.transform @ (52, 42)
    res = ds.res[0]
    sample = ds[x0:x1:res, y0:y1:res]
    assert sample["image"].shape == (3, 32, 32) and sample["image"].dtype == torch.float32
    np.testing.assert_array_equal(sample["image"].numpy(), ref)
    assert torch.allclose(sample["wavelengths"], torch.tensor([0.835, 0.66, 0.56]))
    assert sample["bounds"][:2].tolist() == pytest.approx([x0, x1])


def test_scale_offset_tags_are_applied_as_the_predictor_reads_them(crop, tmp_path):
    """A Landsat Collection 2-style file (DN x 2.75e-5 - 0.2): samples hold reflectance, as read_window gives it
    (issue #28); nodata pixels keep the nodata value."""
    from rasterio.windows import Window

    from carl_geo.inference.predictor import read_window

    path = tmp_path / "scaled.tif"
    with rasterio.open(crop.image) as src:
        profile = src.profile
        data = src.read()
        tags = [src.tags(b, ns="IMAGERY") for b in src.indexes]
    data[:, :4, :4] = 0  # nodata corner
    with rasterio.open(path, "w", **{**profile, "nodata": 0}) as dst:
        dst.write(data)
        dst.scales = [2.75e-5] * 6
        dst.offsets = [-0.2] * 6
        for b, t in zip(dst.indexes, tags):
            dst.update_tags(b, ns="IMAGERY", **t)
    ds = SpectralRaster(path, bands=[4, 3])
    assert ds.scale_offset is not None and ds.scale_offset[0].tolist() == pytest.approx([2.75e-5] * 2)
    with rasterio.open(path) as src:
        x0, y1 = src.transform @ (0, 0)
        x1, y0 = src.transform @ (32, 32)
        ref, valid = read_window(src, [4, 3], Window(0, 0, 32, 32))
    img = ds[x0:x1:ds.res[0], y0:y1:ds.res[0]]["image"].numpy()
    np.testing.assert_allclose(img[:, valid], ref[:, valid], rtol=1e-6)
    assert -0.2 < img[:, valid].min() and img[:, valid].max() < 1.0  # reflectance, not digital numbers
    assert (img[:, :4, :4] == 0).all() and not valid[:4, :4].any()
    with pytest.raises(ValueError, match="scale / offset"):
        SpectralRaster([path, crop.image])


def test_band_selection_by_wavelength_range(crop):
    vnir = SpectralRaster(crop.image, wavelength_range=(0.4, 1.0))
    assert vnir.band_indexes == [1, 2, 3, 4] and vnir.band_names == ["B1", "B2", "B3", "B4"]
    assert vnir.wavelengths.tolist() == pytest.approx(ETM[:4])
    swir = SpectralRaster(crop.image, bands=[6, 5, 1], wavelength_range=(1.0, 2.5))  # order of ``bands`` kept
    assert swir.band_indexes == [6, 5] and swir.wavelengths.tolist() == pytest.approx([2.22, 1.65])
    with rasterio.open(crop.image) as src:
        ref = src.read([6, 5], window=((0, 16), (0, 16))).astype(np.float32)
        x0, y1 = src.transform @ (0, 0)
        x1, y0 = src.transform @ (16, 16)
    res = swir.res[0]
    np.testing.assert_array_equal(swir[x0:x1:res, y0:y1:res]["image"].numpy(), ref)
    with pytest.raises(ValueError, match="no band .* lies in 3.0-4.0 µm"):
        SpectralRaster(crop.image, wavelength_range=(3.0, 4.0))


def test_torchgeo_samplers_and_carl(crop):
    seen = []
    ds = SpectralRaster(crop.image, transforms=lambda s: seen.append(s["wavelengths"].shape) or s)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torchgeo 0.10 renamed the samplers
        random = RandomGeoSampler(ds, size=32, length=4)
        grid = GridGeoSampler(ds, size=48, stride=48)
    batch = next(iter(DataLoader(ds, sampler=random, batch_size=4, collate_fn=stack_samples)))
    assert batch["image"].shape == (4, 6, 32, 32)
    assert batch["wavelengths"].shape == (4, 6) and torch.allclose(batch["wavelengths"][2], torch.tensor(ETM))
    assert seen and seen[0] == (6,)  # user transforms see the wavelengths
    tiles = [ds[q] for q in grid]
    assert len(tiles) == 4 and all(t["image"].shape == (6, 48, 48) for t in tiles)
    torch.manual_seed(0)
    model = carl_geo.CARL(carl_geo.tiny_config()).eval()
    img = batch["image"]
    with torch.no_grad():
        out = model((img - img.mean()) / img.std(), batch["wavelengths"])
    assert out.spatial.shape == (4, 128, 4, 4) and torch.isfinite(out.spatial).all()


@pytest.mark.parametrize(("crs", "res"), [(None, None), ("EPSG:32617", 30.0), ("EPSG:4326", 0.0003)],
                         ids=["native", "utm17n", "wgs84"])
def test_samplers_give_requested_size_in_any_crs(crop, crs, res):
    """torchgeo reprojects on the fly: chips have the requested pixel size in the requested CRS."""
    ds = SpectralRaster(crop.image, crs=crs, res=res)
    with rasterio.open(crop.image) as src:
        native = src.crs
    assert ds.crs == (rasterio.crs.CRS.from_string(crs) if crs else native)
    random = RandomPatchSampler(ds, size=24, length=3)
    batch = next(iter(DataLoader(ds, sampler=random, batch_size=3, collate_fn=stack_samples)))
    assert batch["image"].shape == (3, 6, 24, 24)
    assert torch.allclose(batch["wavelengths"], torch.tensor(ETM).expand(3, -1))
    tiles = [ds[q]["image"] for q in GriddedPatchSampler(ds, size=40, stride=40)]
    assert tiles and all(t.shape == (6, 40, 40) for t in tiles)
    assert (torch.stack(tiles) > 0).float().mean() > 0.5  # mostly pixels; a rotated footprint leaves fill corners
