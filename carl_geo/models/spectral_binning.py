"""Spectral binning: many narrow bands -> fewer broader bands, by averaging neighbours in wavelength.

A hyperspectral cube (200+ bands) carries its information in smooth spectra: neighbouring bands are
strongly correlated, so averaging groups of neighbours into ~24 broader bands keeps almost all of it
(a per-pixel random forest scored the same on 24 binned bands as on all 200 of the generated
hyperspectral scene) while the CARL spectral encoder's cost falls with the band count. A bin's
wavelength is the mean of its bands' wavelengths; CARL only needs band centres.

* :func:`equal_bins` / :func:`random_bins`: bin edges over C bands (in wavelength order);
* :func:`bin_matrix`: (B, n, C) averaging weights, one set of edges per sample;
* :func:`apply_bins`: image (B, C, H, W) and wavelengths -> (B, n, H, W) and (B, n).

Training draws random edges per sample (a random broad-band camera each time); prediction uses
equal-count bins (:func:`bin_spectra`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor


def equal_bins(c: int, n: int) -> np.ndarray:
    """Edges (n + 1,) of ``n`` contiguous bins of (nearly) equal band counts over ``c`` bands."""
    n = max(1, min(int(n), int(c)))
    return np.round(np.linspace(0, c, n + 1)).astype(np.int64)


def random_bins(c: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """Edges (n + 1,) of ``n`` contiguous non-empty bins with random cut points over ``c`` bands."""
    n = max(1, min(int(n), int(c)))
    cuts = np.sort(rng.choice(np.arange(1, c), size=n - 1, replace=False)) if n > 1 else np.array([], np.int64)
    return np.concatenate([[0], cuts, [c]]).astype(np.int64)


def bin_matrix(edges: Sequence[np.ndarray], c: int) -> Tensor:
    """(B, n, C) float32 averaging weights: row j of sample b averages bands ``edges[b][j]:edges[b][j+1]``.
    Every sample needs the same n."""
    n = len(edges[0]) - 1
    m = torch.zeros(len(edges), n, c)
    for b, e in enumerate(edges):
        if len(e) - 1 != n:
            raise ValueError("every sample needs the same number of bins")
        for j in range(n):
            m[b, j, int(e[j]):int(e[j + 1])] = 1.0 / max(1, int(e[j + 1]) - int(e[j]))
    return m


def apply_bins(img: Tensor, wavelengths: Tensor, matrix: Tensor) -> tuple[Tensor, Tensor]:
    """Average bands: ``img`` (B, C, H, W) and ``wavelengths`` (C,) or (B, C) µm, both in wavelength
    order, with ``matrix`` (B, n, C) -> ((B, n, H, W), (B, n))."""
    m = matrix.to(device=img.device, dtype=img.dtype)
    wl = wavelengths.to(img.dtype)
    wl = wl.expand(img.shape[0], -1) if wl.ndim == 1 else wl
    return torch.einsum("bnc,bchw->bnhw", m, img), torch.einsum("bnc,bc->bn", m, wl)


def bin_spectra(img: Tensor, wavelengths: Tensor, n: int) -> tuple[Tensor, Tensor]:
    """``img`` (B, C, H, W) with C > n bands -> n equal-count bins in wavelength order (bands are
    sorted by wavelength first, per sample). Returns ((B, n, H, W), (B, n) µm)."""
    b, c = img.shape[:2]
    wl = wavelengths.expand(b, -1) if wavelengths.ndim == 1 else wavelengths
    order = wl.argsort(dim=1)
    if not bool((order == torch.arange(c, device=order.device)).all()):
        img = img.gather(1, order[:, :, None, None].expand_as(img))
        wl = wl.gather(1, order)
    edges = equal_bins(c, n)
    return apply_bins(img, wl, bin_matrix([edges] * b, c))
