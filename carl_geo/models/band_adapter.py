"""The band-agnostic path of a polygon-trained model: labelled training pixels kept by wavelength.

A :class:`~carl_geo.models.pixel_classifier.PixelClassifier`'s heads read the training bands in their order. To
map from other bands of the same sensor family (a subset, another camera) without new labels, the model carries an
:class:`ExemplarBank`: a sample of its labelled training pixels, each stored as its normalised band values and the
window means of those values (the windows of the context features), indexed by the training wavelengths (µm).

For a new band set, :meth:`ExemplarBank.adapt` interpolates every stored pixel linearly in wavelength onto the new
bands (exact for a subset of the training bands), fits context features (bands + window means of principal
components) on them and a random forest and an MLP on those features, and returns them as a :class:`BandAdapter`
(the mean of the two heads' probabilities). Window means and principal components are linear in the bands, so the
stored pixels give exactly the features the adapter computes on an image of the new bands. Fitting takes seconds
(Sentinel-2, 38,461 pixels, 4 bands: 13-15 s on 2 cores, the forest alone 7-9 s) and is done once per band set; a
pickled model carries the adapters it has fitted (a dask worker uses them rather than refitting).

Measured (``benchmarks/results/polygon_experiments/2026-12-07b``, kept bench models, seeds 0 and 1, paired): the MLP
next to the forest is ahead in 13 of 14 cells and level in the last, e.g. a 13-band Sentinel-2 model mapping from
B02 B03 B04 B08: mIoU 0.288 with the forest alone, 0.300 with both (85 % of the 13-band score; the CARL part
alone about 58 %); NC from B1-B4: 0.248 -> 0.275.

Shapes: ``values`` (N, C, 1 + W) float16 (band value, then its mean over each of the W windows), ``labels`` (N,)
int64, ``wavelengths`` (C,) µm.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from carl_geo.errors import CarlGeoError
from carl_geo.models.context_features import ContextFeatures, window_mean
from carl_geo.models.pixel_mlp import fit_pixel_mlp, head_kind, mean_probabilities
from carl_geo.models.tree_ensemble import fit_random_forest

#: Stored values at most (N x C x (1 + W)); 2 M float16 values are 4 MB (Sentinel-2, 13 bands, 3 windows:
#: 38,000 pixels; 200 bands: 2,500).
MAX_VALUES = 2_000_000
#: Fewest stored pixels worth keeping (fewer: no bank, the model maps other bands with CARL alone).
MIN_PIXELS = 50
#: New bands may lie this far (µm) outside the training bands' range; their values are the nearest training band's.
RANGE_MARGIN_UM = 0.05
#: Wavelengths (µm) this close are the same band (float32 storage).
SAME_BAND_UM = 1e-4
#: Trees of the adapter's forest (as the training heads').
ADAPTER_TREES = 100
#: Heads an adapter fits, averaged: a forest and an MLP. Measured on kept bench models of NC, Sentinel-2 and the
#: 200-band scene, two seeds, 7 band sets (``benchmarks/results/polygon_experiments/2026-12-07b``): both heads ahead
#: of the forest alone in 13 of 14 cells, level in the last (mean +0.029 mIoU); the MLP alone was level with the
#: forest on Sentinel-2 (``../2026-12-07``).
ADAPTER_HEADS = ("forest", "mlp")
#: Band sets whose fitted adapters a bank keeps (the one fitted first is dropped beyond that): each holds a
#: forest and an MLP (Sentinel-2: about 35 MB pickled, 130 MiB of resident memory measured per band set), so a
#: long-lived process (the QGIS desktop) that maps from many band sets stays bounded.
ADAPTER_CACHE = 4


class BandAdapter(nn.Module):
    """Context features + heads fitted for one band set: ``forward(img (B, C', H, W)) -> (B, K, H, W)`` mean class
    probabilities of the heads (``img`` normalised as the model's input, bands in the order the adapter was made
    for). ``heads``: a forest (:class:`~carl_geo.models.tree_ensemble.TreeEnsemble`) and / or a
    :class:`~carl_geo.models.pixel_mlp.PixelMLP`, reading the context features."""

    def __init__(self, context: ContextFeatures, heads: Sequence[nn.Module], n_pixels: int, seconds: float) -> None:
        super().__init__()
        if not heads:
            raise CarlGeoError("a band adapter needs at least one head")
        self.context, self.heads = context, nn.ModuleList(heads)
        self.n_pixels, self.seconds = int(n_pixels), float(seconds)

    @property
    def head_names(self) -> list[str]:
        """``"forest"`` / ``"MLP"`` for each head, in order (for notices)."""
        return ["MLP" if head_kind(h) == "mlp" else "forest" for h in self.heads]

    def forward(self, img: Tensor) -> Tensor:
        feats = self.context(img)
        b, f, h, w = feats.shape
        prob = mean_probabilities(self.heads, feats.permute(0, 2, 3, 1).reshape(-1, f))
        return prob.reshape(b, h, w, -1).permute(0, 3, 1, 2)


class ExemplarBank(nn.Module):
    """Labelled training pixels by wavelength (see the module doc).

    Args:
        wavelengths: (C,) µm of the stored bands (the training bands).
        n_pixels: N stored pixels.
        num_classes: K.
        windows: odd window sides (px) of the stored window means (the context features').
        seed: seeds the adapters' heads (the same bank and bands give the same adapter on the same machine and
            thread count; a pickled bank carries the adapters it has fitted, so dask workers use the same ones).
        heads: the heads an adapter fits (:data:`ADAPTER_HEADS`), averaged.
    """

    def __init__(self, wavelengths: Sequence[float], n_pixels: int, num_classes: int,
                 windows: Sequence[int], seed: int = 0, heads: Sequence[str] = ADAPTER_HEADS) -> None:
        super().__init__()
        wl = [float(w) for w in wavelengths]
        if not wl or n_pixels < 1 or num_classes < 1:
            raise CarlGeoError(f"an exemplar bank needs bands, pixels and classes, got {len(wl)}, {n_pixels}, "
                               f"{num_classes}")
        if any(b <= a for a, b in zip(wl, wl[1:])):
            raise CarlGeoError("an exemplar bank's wavelengths must increase")
        self.n_pixels, self.num_classes = int(n_pixels), int(num_classes)
        self.windows, self.seed = tuple(int(w) for w in windows), int(seed)
        self.head_kinds = tuple(str(h) for h in heads)
        if not self.head_kinds or any(h not in ADAPTER_HEADS for h in self.head_kinds):
            raise CarlGeoError(f"an exemplar bank's heads are some of {', '.join(ADAPTER_HEADS)}, got "
                               f"{', '.join(self.head_kinds) or 'none'}")
        self.register_buffer("wavelengths", torch.tensor(wl, dtype=torch.float32))
        self.register_buffer("values", torch.zeros(self.n_pixels, len(wl), 1 + len(self.windows),
                                                   dtype=torch.float16))
        self.register_buffer("labels", torch.zeros(self.n_pixels, dtype=torch.int64))
        self._adapters: dict[tuple[float, ...], BandAdapter | None] = {}  # in the order they were fitted

    def config(self) -> dict[str, Any]:
        """Plain dict that rebuilds this bank's shape (``ExemplarBank(**config)``)."""
        return {"wavelengths": [float(w) for w in self.wavelengths.tolist()], "n_pixels": self.n_pixels,
                "num_classes": self.num_classes, "windows": list(self.windows), "seed": self.seed,
                "heads": list(self.head_kinds)}

    @classmethod
    @torch.no_grad()
    def from_image(cls, image: np.ndarray, wavelengths: Sequence[float], index: np.ndarray, labels: np.ndarray,
                   num_classes: int, windows: Sequence[int], seed: int = 0) -> "ExemplarBank | None":
        """A bank of the pixels at flat ``index`` of the normalised ``image`` (C, H, W) with classes ``labels``
        (N,), at most :data:`MAX_VALUES` values (a uniform sample of them); None when fewer than
        :data:`MIN_PIXELS` pixels would be kept. Bands are stored in increasing wavelength."""
        c = image.shape[0]
        n_max = MAX_VALUES // (c * (1 + len(windows)))
        if min(len(index), n_max) < MIN_PIXELS:
            return None
        if len(index) > n_max:
            keep = np.sort(np.random.default_rng(seed).choice(len(index), n_max, replace=False))
            index, labels = index[keep], labels[keep]
        order = np.argsort(np.asarray(wavelengths, dtype=np.float64), kind="stable")
        bank = cls([float(wavelengths[i]) for i in order], len(index), num_classes, windows, seed)
        vals = np.empty((len(index), c, 1 + len(windows)), dtype=np.float32)
        for j, band in enumerate(order):  # one band at a time: a few scene-sized buffers at most
            x = torch.from_numpy(np.ascontiguousarray(image[band], dtype=np.float32))[None, None]
            vals[:, j, 0] = x.reshape(-1)[index].numpy()
            for i, w in enumerate(bank.windows):
                vals[:, j, 1 + i] = window_mean(x, w).reshape(-1)[index].numpy()
        bank.values.copy_(torch.from_numpy(vals).to(torch.float16))
        bank.labels.copy_(torch.as_tensor(labels, dtype=torch.int64))
        return bank

    def interpolation(self, wavelengths: Sequence[float]) -> np.ndarray | None:
        """(C', C) weights that interpolate the stored bands linearly in wavelength onto ``wavelengths`` (µm), or
        None when one lies more than :data:`RANGE_MARGIN_UM` outside the stored range."""
        mine = self.wavelengths.double().numpy()
        out = np.zeros((len(wavelengths), len(mine)))
        for j, w in enumerate(float(v) for v in wavelengths):
            if not mine[0] - RANGE_MARGIN_UM <= w <= mine[-1] + RANGE_MARGIN_UM:
                return None
            near = int(np.abs(mine - w).argmin())
            if len(mine) == 1 or abs(mine[near] - w) <= SAME_BAND_UM:  # a stored band: its values exactly
                out[j, near] = 1.0
                continue
            k = int(np.clip(np.searchsorted(mine, w), 1, len(mine) - 1))
            a, b = mine[k - 1], mine[k]
            f = float(np.clip((w - a) / (b - a), 0.0, 1.0))
            out[j, k - 1] += 1.0 - f
            out[j, k] += f
        return out

    def covers(self, wavelengths: Sequence[float]) -> bool:
        """Whether :meth:`adapt` can serve these bands (all within the stored range)."""
        return self.interpolation(wavelengths) is not None

    @torch.no_grad()
    def adapt(self, wavelengths: Sequence[float]) -> BandAdapter | None:
        """The :class:`BandAdapter` for bands at ``wavelengths`` (µm, in the order the image has them), or None when
        they lie outside the stored range. Fitted once per band set; the adapters of the :data:`ADAPTER_CACHE` band sets
        fitted last are kept."""
        key = tuple(round(float(w), 4) for w in wavelengths)
        if key in self._adapters:  # a read only: threads of a dask worker share the fitted adapter
            return self._adapters[key]
        weights = self.interpolation(key)
        adapter = None if weights is None else self._fit(weights)
        self._adapters[key] = adapter
        for old in list(self._adapters)[:-ADAPTER_CACHE]:  # insertion order: the oldest fits go first
            self._adapters.pop(old, None)
        return adapter

    def _fit(self, weights: np.ndarray) -> BandAdapter:
        import time

        t0 = time.perf_counter()
        self._check()
        vals = self.values.float().numpy()  # (N, C, 1 + W)
        new = np.einsum("jc,ncw->njw", weights, vals).astype(np.float32)  # (N, C', 1 + W)
        ctx = ContextFeatures(new.shape[1], windows=self.windows)
        bands = new[:, :, 0]
        if len(bands) < 2:
            raise CarlGeoError("an exemplar bank needs at least two pixels")
        ctx.fit(torch.from_numpy(np.ascontiguousarray(bands)))
        x = ctx.pixel_features(torch.from_numpy(np.ascontiguousarray(bands)),
                               [torch.from_numpy(np.ascontiguousarray(new[:, :, 1 + i]))
                                for i in range(len(self.windows))]).numpy()
        y = self.labels.numpy()
        heads = [fit_random_forest(x, y, self.num_classes, seed=self.seed, trees=ADAPTER_TREES) if kind == "forest"
                 else fit_pixel_mlp(x, y, self.num_classes, seed=self.seed) for kind in self.head_kinds]
        return BandAdapter(ctx.eval(), heads, len(x), time.perf_counter() - t0).eval()

    def _check(self) -> None:
        """The stored tensors (from a file) are what an adapter can be fitted on, else a clear error."""
        wl, labels = self.wavelengths, self.labels
        if not bool(torch.isfinite(wl).all()) or bool((wl[1:] <= wl[:-1]).any()):
            raise CarlGeoError("the model's stored training pixels have wavelengths that are not increasing numbers")
        if len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= self.num_classes):
            raise CarlGeoError(f"the model's stored training pixels have classes outside 0..{self.num_classes - 1}")
        if not bool(torch.isfinite(self.values).all()):
            raise CarlGeoError("the model's stored training pixels hold values that are not finite numbers")
