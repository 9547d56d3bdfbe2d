"""Deprecated module name: moved to :mod:`carl_geo.datasets.band_subset` (issue #29: every torch
Dataset lives in ``carl_geo/datasets/``). This name is an alias of that module (old imports and pickled
paths keep working); removed in carl_geo 0.3."""

from carl_geo._lazy import alias_module

alias_module(__name__, "carl_geo.datasets.band_subset")
