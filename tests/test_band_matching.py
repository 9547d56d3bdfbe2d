"""Which given bands are a model's training bands (carl_geo.models.band_matching): the same bands with slightly
other centres pass (Sentinel-2B against 2A, a nominal table against a file's centres, a hyperspectral unit's small
calibration shift); another camera, a subset or bands shifted by half their spacing do not."""

from __future__ import annotations

import numpy as np
import pytest

from carl_geo.models.band_matching import allowed_shifts, match_bands
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
    assert max(abs(a - b) for a, b in zip(S2A_FILE, S2B)) == pytest.approx(0.0167, abs=1e-6)  # B12: within 20 nm
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


def test_densely_sampled_bands_are_resampled_onto_the_training_centres():
    from carl_geo.models.band_matching import as_permutation, band_weights

    wl = np.asarray(aviris_like_wavelengths(200))
    spectrum = 2 * wl + 1  # a linear spectrum comes back exactly where a centre lies between dense bands

    for shift in (0.002, 0.004, -0.003, 0.006):  # within and beyond the one-to-one pairing
        given = wl + shift
        w = band_weights(wl, given)
        assert w is not None and as_permutation(w) is None
        np.testing.assert_allclose(w.sum(1), 1.0)
        k = np.searchsorted(given, wl)
        dense = (k > 0) & (k < len(wl))
        dense[dense] = given[k[dense]] - given[k[dense] - 1] <= 0.025
        assert dense.sum() > 190
        np.testing.assert_allclose((w @ (2 * given + 1))[dense], spectrum[dense], atol=1e-9)
        # the others (range ends, water-vapour gap edges): the nearest band's values
        assert (w[~dense].max(1) == 1).all()
    # every other band (17.8 nm apart): still dense; every third (26.7 nm): not, and nothing pairs them
    assert band_weights(wl, wl[::2]) is not None and band_weights(wl, wl[::3]) is None
    # multispectral bands are never interpolated: Sentinel-2B on a 2A model is a permutation, a subset nothing
    assert as_permutation(band_weights(S2A_FILE, S2B)) == list(range(13))
    assert band_weights(S2A_FILE, S2A_FILE[:4]) is None and band_weights(LANDSAT7, LANDSAT8) is None
    # the training bands among extra ones: those bands, the extra ones unweighted
    w = band_weights(S2A_FILE, [0.3, *S2A_FILE])
    assert w is not None and (w[:, 0] == 0).all() and (w[:, 1:] == np.eye(13)).all()
    assert band_weights(S2A_FILE, [float("nan")] * 13) is None
