"""Which given bands are a model's training bands (one-to-one pairing by nearest centre wavelength, µm), and how to
get the training bands from densely sampled ones (spectral resampling).

The same bands reach a model with slightly different centres: Sentinel-2B's against a Sentinel-2A model (1.4-17 nm
apart on B06, B07, B09-B12), a file's measured centres against a sensor's nominal table (up to 12 nm), the units of
one hyperspectral sensor. Heads that read band values in the training order should read them as the training bands;
bands of another camera, or a subset, should not. The rule: as many bands, each training band paired with its
nearest given band and that band's nearest training band is it (a one-to-one pairing), and no centre moved further
than :data:`SPACING_SHARE` of its training band's spectral cell (the mean distance to its neighbours on either side;
the one neighbour's distance for the first and last band), nor further than :data:`MAX_SHIFT_UM` (shifts up to
:data:`ALWAYS_SAME_UM` always pass: round-off, tables given to the nanometre). Bands 8.9 nm apart (hyperspectral)
may thus move 2.7 nm, Sentinel-2's B08 12 nm, broad bands with distant neighbours 20 nm.

Densely sampled (hyperspectral) bands are interpolated instead (:func:`band_weights`): a training centre between two
given bands at most :data:`CONTIGUOUS_GAP_UM` apart is read as their linear interpolation, also for another band set
over the same range; multispectral bands never are.

Measured (``benchmarks/bench_band_centres.py``, README "The same bands with other centres"): the same Sentinel-2
pixels given Sentinel-2B's centres map at mIoU 0.362 through the heads and 0.242 through the band-agnostic path; a
model of the generated 200-band scene (bands 8.9 nm apart) given the scene regenerated with centres shifted by 1-4 nm
maps at 0.70-0.76 with interpolation (0.761 / 0.716 unshifted, seeds 0 / 1), 0.54-0.68 with the bands paired as they
are and 0.51-0.59 through the band-agnostic path.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: A centre may move at most this share of its training band's spectral cell (mean distance to its neighbours).
SPACING_SHARE = 0.3
#: ... and at most this far (µm), whatever the spacing.
MAX_SHIFT_UM = 0.02
#: Centres this close (µm) are the same band whatever the spacing.
ALWAYS_SAME_UM = 1e-3
#: Centres this close (µm) are read as they are, never interpolated (float32 round-off, tables given to 0.1 nm).
SAME_CENTRE_UM = 1e-4
#: Given bands at most this far apart (µm) sample one spectrum densely (hyperspectral sampling): a training centre
#: between two of them is interpolated from them. Multispectral bands (Sentinel-2's closest: 32 nm) never are.
CONTIGUOUS_GAP_UM = 0.025


def allowed_shifts(trained: Sequence[float]) -> np.ndarray:
    """(C,) how far (µm) each training band's centre may move and still be that band."""
    wl = np.asarray(trained, dtype=np.float64).reshape(-1)
    if len(wl) < 2:
        return np.full(len(wl), MAX_SHIFT_UM)
    order = np.argsort(wl)
    gaps = np.diff(wl[order])
    left = np.concatenate([[np.nan], gaps])
    right = np.concatenate([gaps, [np.nan]])
    cell = np.empty(len(wl))
    cell[order] = np.nanmean(np.stack([left, right]), axis=0)
    return np.clip(SPACING_SHARE * cell, ALWAYS_SAME_UM, MAX_SHIFT_UM)


def match_bands(trained: Sequence[float], given: Sequence[float]) -> list[int] | None:
    """Indexes into ``given`` (µm) that put it in the order of ``trained`` (µm), when the given bands are the
    training bands (any order, centres within :func:`allowed_shifts`); None when they are other bands."""
    mine = np.asarray(trained, dtype=np.float64).reshape(-1)
    wl = np.asarray(given, dtype=np.float64).reshape(-1)
    if len(mine) != len(wl) or len(mine) == 0 or not (np.isfinite(mine).all() and np.isfinite(wl).all()):
        return None
    dist = np.abs(mine[:, None] - wl[None, :])
    order = dist.argmin(1)
    if len(set(order.tolist())) != len(order) or not np.array_equal(dist.argmin(0)[order], np.arange(len(mine))):
        return None
    if (dist[np.arange(len(mine)), order] > allowed_shifts(mine) + 1e-9).any():
        return None
    return [int(i) for i in order]


def band_weights(trained: Sequence[float], given: Sequence[float]) -> np.ndarray | None:
    """(C_train, C_given) weights that give each training band from the given bands (µm), or None when some
    training band cannot be had from them.

    Per training band: (a) a given band within :data:`SAME_CENTRE_UM`: its values; (b) else the two given bands
    around its centre, when at most :data:`CONTIGUOUS_GAP_UM` apart: linear interpolation between them (spectral
    resampling of densely sampled, hyperspectral bands); (c) else the nearest given band, when within the shift
    :func:`allowed_shifts` allows that band (the same band with another centre), or, at the end of a densely sampled
    range, within half :data:`CONTIGUOUS_GAP_UM`. A permutation matrix for the training bands in any order; extra
    given bands get no weight.
    """
    mine = np.asarray(trained, dtype=np.float64).reshape(-1)
    wl = np.asarray(given, dtype=np.float64).reshape(-1)
    if len(mine) == 0 or len(wl) == 0 or not (np.isfinite(mine).all() and np.isfinite(wl).all()):
        return None
    allowed = allowed_shifts(mine)
    by_wl = np.argsort(wl, kind="stable")
    srt = wl[by_wl]
    dense_end = {0: len(srt) > 1 and srt[1] - srt[0] <= CONTIGUOUS_GAP_UM,
                 len(srt) - 1: len(srt) > 1 and srt[-1] - srt[-2] <= CONTIGUOUS_GAP_UM}
    weights = np.zeros((len(mine), len(wl)))
    for i, t in enumerate(mine):
        k = int(np.searchsorted(srt, t))
        near = min((j for j in (k - 1, k) if 0 <= j < len(srt)), key=lambda j: abs(srt[j] - t))
        shift = abs(srt[near] - t)
        if shift <= SAME_CENTRE_UM:
            weights[i, by_wl[near]] = 1.0
        elif 0 < k < len(srt) and srt[k] - srt[k - 1] <= CONTIGUOUS_GAP_UM:
            f = (t - srt[k - 1]) / (srt[k] - srt[k - 1])
            weights[i, by_wl[k - 1]], weights[i, by_wl[k]] = 1.0 - f, f
        elif shift <= allowed[i] + 1e-9 or (dense_end.get(near, False) and (k == 0 or k == len(srt))
                                            and shift <= CONTIGUOUS_GAP_UM / 2):
            weights[i, by_wl[near]] = 1.0
        else:
            return None
    return weights


def as_permutation(weights: np.ndarray) -> list[int] | None:
    """The column of each row when ``weights`` (:func:`band_weights`) only reorders bands, else None."""
    if weights.shape[0] != weights.shape[1] or not np.isin(weights, (0.0, 1.0)).all():
        return None
    cols = weights.argmax(1)
    return [int(c) for c in cols] if len(set(cols.tolist())) == len(cols) and (weights.sum(1) == 1).all() else None
