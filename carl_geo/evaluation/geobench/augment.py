"""Deprecated module name: moved to :mod:`carl_geo.datasets.geobench.augment` (issue #29: GEO-Bench's
data files live in ``carl_geo/datasets/geobench/``; the runner, result tables and command line stay in
``carl_geo/evaluation/geobench/``). This name is an alias of that module (old imports and pickled paths
keep working); removed in carl_geo 0.3."""

from carl_geo._lazy import alias_module

alias_module(__name__, "carl_geo.datasets.geobench.augment")
