"""Deprecated module name: moved to :mod:`carl_geo.ssl_cli` (issue #29: command-line modules sit above the
trainers they run, beside :mod:`carl_geo.cli`). This name is an alias of that module (old imports keep
working); removed in carl_geo 0.3."""

from carl_geo._lazy import alias_module

alias_module(__name__, "carl_geo.ssl_cli")
