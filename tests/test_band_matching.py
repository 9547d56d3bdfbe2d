"""Which given bands are a model's training bands (carl_geo.models.band_matching): the same bands with slightly
other centres pass (Sentinel-2B against 2A, a nominal table against a file's centres, a hyperspectral unit's small
calibration shift); another camera, a subset or bands shifted by half their spacing do not."""

from __future__ import annotations

import numpy as np
import pytest

from carl_geo.models.band_matching import allowed_shifts, largest_shift, match_bands
from carl_geo.sample_data.synthetic import aviris_like_wavelengths
from carl_geo.sensors import get_sensor

# the centres a Sentinel-2A L1C file of the Havelland scene carries, and Sentinel-2B's (ESA spectral responses)
S2A_FILE = [0.4427, 0.4924, 0.5598, 0.6646, 0.7041, 0.7405, 0.7828, 0.8328, 0.8647, 0.9451, 1.3735, 1.6137, 2.2024]
S2B = [0.4422, 0.4921, 0.5590, 0.6649, 0.7038, 0.7391, 0.7797, 0.8329, 0.8640, 0.9432, 1.3769, 1.6104, 2.1857]
LANDSAT7 = [0.485, 0.56, 0.66, 0.835, 1.65, 2.22]
LANDSAT8 = [0.4826, 0.5613, 0.6546, 0.8646, 1.609, 2.201]


def test_the_same_sentinel2_bands_with_other_centres_are_the_training_bands():
    nominal = list(get_sensor("sentinel2_l1c").wavelengths)
    for trained, given in ((S2A_FILE, S2B), (S2A_FILE, nominal), (S2B, nominal), (nominal, S2A_FILE)):
        assert match_bands(trained, given) == list(range(13))
    assert largest_shift(S2A_FILE, S2B) == pytest.approx(0.0167, abs=1e-6)  # B12
    # in another order: the pairing puts them back
    perm = np.random.default_rng(0).permutation(13)
    order = match_bands(S2A_FILE, [S2B[i] for i in perm])
    assert [int(perm[i]) for i in order] == list(range(13))


def test_other_bands_are_not_the_training_bands():
    assert match_bands(LANDSAT7, LANDSAT8) is None  # NIR 30 nm apart: another camera's band
    assert match_bands(S2A_FILE, S2A_FILE[:4]) is None  # a subset
    assert match_bands(S2A_FILE, [*S2A_FILE[:7], S2A_FILE[8], S2A_FILE[8], *S2A_FILE[9:]]) is None  # a band twice
    assert match_bands([0.5], [0.53]) is None and match_bands([0.5], [0.515]) == [0]  # one band: at most 20 nm
    assert match_bands([], []) is None
    assert match_bands([0.5], [float("nan")]) is None and match_bands([0.5, 0.6], [0.5, float("inf")]) is None
    assert largest_shift(LANDSAT7, LANDSAT8) == 0.0


def test_hyperspectral_bands_may_move_a_third_of_their_spacing():
    wl = np.asarray(aviris_like_wavelengths(200))
    spacing = float(np.median(np.diff(wl)))
    assert 0.0085 < spacing < 0.0095
    assert np.median(allowed_shifts(wl)) == pytest.approx(0.3 * spacing, abs=1e-4)
    assert match_bands(wl, wl + 0.002) == list(range(200))
    assert match_bands(wl, wl[::-1] - 0.002) == list(range(199, -1, -1))
    assert match_bands(wl, wl + 0.003) is None  # measured: from 3 nm on the band-agnostic path maps as well
    # half a spacing: every band is as near the neighbour's centre as its own
    assert match_bands(wl, wl + spacing / 2) is None
    # a band's centre may not move by more than the share, even where the others stay
    moved = wl.copy()
    moved[100] += 0.35 * (wl[101] - wl[100])
    assert match_bands(wl, moved) is None


def test_allowed_shift_is_a_share_of_the_band_s_cell():
    # S2's B08: neighbours 50.0 and 31.9 nm away -> 0.3 x 40.95 nm; B12 (last band, next one 589 nm away): 20 nm cap
    allowed = allowed_shifts(S2A_FILE)
    assert allowed[7] == pytest.approx(0.3 * 0.04095, abs=1e-6)
    assert allowed[12] == pytest.approx(0.02) and allowed[0] == pytest.approx(0.3 * 0.0497, abs=1e-6)
    # unsorted input: the same cells
    perm = np.random.default_rng(1).permutation(13)
    np.testing.assert_allclose(allowed_shifts([S2A_FILE[i] for i in perm]), allowed[perm])
    assert allowed_shifts([1.0, 1.0005]).tolist() == [0.001, 0.001]  # never below the round-off floor
