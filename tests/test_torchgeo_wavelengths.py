"""Existing torchgeo datasets gain per-band wavelengths from torchgeo's own tables."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("torchgeo")
from torchgeo.datasets import Sentinel2  # noqa: E402
from torchgeo.samplers import GridGeoSampler  # noqa: E402

from carl_geo.datasets.torchgeo_wavelengths import AddWavelengths, WithWavelengths, torchgeo_wavelengths  # noqa: E402
from helpers import write_raster  # noqa: E402


@pytest.fixture()
def s2_folder(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "R10m"  # torchgeo finds the other bands of a granule by the L2A folder layout
    folder.mkdir()
    for band in ("B02", "B03", "B04", "B08"):
        path = folder / f"T32UNE_20240611T103631_{band}_10m.tif"
        write_raster(path, rng.integers(0, 5000, (1, 64, 64), dtype=np.uint16), origin=(500000.0, 5300000.0),
                     tiled=False)
    return folder


def test_sentinel2_samples_carry_wavelengths(s2_folder):
    ds = Sentinel2(paths=str(s2_folder), bands=["B04", "B03", "B02", "B08"], res=10)
    wl = torchgeo_wavelengths(ds)
    assert wl == pytest.approx([Sentinel2.wavelengths[b] for b in ("B04", "B03", "B02", "B08")])
    assert wl[0] == pytest.approx(0.6646)
    wrapped = WithWavelengths(ds)
    sampler = GridGeoSampler(ds, size=32, stride=32)
    sample = wrapped[next(iter(sampler))]
    assert sample["image"].shape == (4, 32, 32)
    torch.testing.assert_close(sample["wavelengths"], torch.tensor(wl, dtype=torch.float32))
    # the same as a torchgeo ``transforms`` argument
    ds2 = Sentinel2(paths=str(s2_folder), bands=["B08", "B02"], res=10)
    ds2.transforms = AddWavelengths.for_dataset(ds2)
    sample2 = ds2[next(iter(GridGeoSampler(ds2, size=16, stride=16)))]
    assert sample2["wavelengths"].tolist() == pytest.approx([0.8328, 0.4927])


def test_errors_are_clear():
    class NoBands:
        pass

    with pytest.raises(ValueError, match="publishes no per-band wavelengths"):
        torchgeo_wavelengths(NoBands())
    with pytest.raises(ValueError, match="micrometres"):
        AddWavelengths([490.0, 560.0])
    with pytest.raises(ValueError, match="3 bands but 2 wavelengths"):
        AddWavelengths([0.49, 0.56])({"image": torch.zeros(3, 4, 4)})
