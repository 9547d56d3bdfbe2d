"""Choices of :class:`~carl_geo.datasets.geobench.dataset.GeoBenchDataset`, in a module without heavy imports
(the command line builds its parser from them without loading torch)."""

from typing import Literal, get_args

#: Input normalisation: one mean/std per image (upstream) or GEO-Bench's per-band statistics.
Normalization = Literal["image", "band"]
#: Band wavelengths as stored, or with the known m-eurosat / m-brick-kiln order corrected.
BandOrder = Literal["stored", "corrected"]

NORMALIZATIONS: tuple[str, ...] = get_args(Normalization)
BAND_ORDERS: tuple[str, ...] = get_args(BandOrder)
