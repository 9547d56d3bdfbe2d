"""Deprecated module name: moved to :mod:`carl_geo.ssl.knn` (issue #29: the k-NN vote sits below the SSL
monitor and the trainers that use it). This name is an alias of that module (old imports keep working);
removed in carl_geo 0.3."""

from carl_geo._lazy import alias_module

alias_module(__name__, "carl_geo.ssl.knn")
