"""Which given bands are a model's training bands: one-to-one pairing by nearest centre wavelength (µm).

The same bands reach a model with slightly different centres: Sentinel-2B's against a Sentinel-2A model (1.4-17 nm
apart on B06, B07, B09-B12), a file's measured centres against a sensor's nominal table (up to 12 nm), the units of
one hyperspectral sensor. Heads that read band values in the training order should read them as the training bands;
bands of another camera, or a subset, should not. The rule: as many bands, each training band paired with its
nearest given band and that band's nearest training band is it (a one-to-one pairing), and no centre moved further
than :data:`SPACING_SHARE` of its training band's spectral cell (the mean distance to its neighbours on either side;
the one neighbour's distance for the first and last band), nor further than :data:`MAX_SHIFT_UM` (shifts up to
:data:`ALWAYS_SAME_UM` always pass: round-off, tables given to the nanometre). Bands 8.9 nm apart (hyperspectral)
may thus move 2.7 nm, Sentinel-2's B08 12 nm, broad bands with distant neighbours 20 nm.

Measured (``benchmarks/bench_band_centres.py``): the same Sentinel-2 pixels given Sentinel-2B's centres map at mIoU
0.362 through the heads and 0.242 through the band-agnostic path; a model of the generated 200-band scene (bands
8.9 nm apart) given the scene regenerated with shifted centres maps better through its heads up to 2 nm (seeds 0 / 1:
0.604 / 0.612 against 0.548 / 0.582 at 2 nm), while from 3 nm on the two are level or the band-agnostic path leads.
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


def largest_shift(trained: Sequence[float], given: Sequence[float]) -> float:
    """The largest centre difference (µm) between matched bands (0.0 when :func:`match_bands` finds no match)."""
    order = match_bands(trained, given)
    if order is None:
        return 0.0
    return float(np.abs(np.asarray(trained, dtype=np.float64) - np.asarray(given, dtype=np.float64)[order]).max())
