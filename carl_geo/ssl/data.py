"""Deprecated module name: moved to :mod:`carl_geo.datamodules.carl_ssl` (issue #19: LightningModules live in
``carl_geo/trainers/``, DataModules in ``carl_geo/datamodules/``, samplers in ``carl_geo/samplers/``).
This name is an alias of that module (old imports and pickled paths keep working)."""

from carl_geo._lazy import alias_module

alias_module(__name__, "carl_geo.datamodules.carl_ssl")
