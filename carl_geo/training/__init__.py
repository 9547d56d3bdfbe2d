"""Deprecated name of :mod:`carl_geo.polygon_training` (renamed in issue #19: polygon training is a
plain torch loop, the Lightning tasks live in :mod:`carl_geo.trainers`).

``import carl_geo.training``, ``from carl_geo.training.polygons import train_from_polygons`` and
pickled ``carl_geo.training.*`` paths keep working: they give the very modules of
:mod:`carl_geo.polygon_training`, with a :class:`DeprecationWarning`.
"""

from carl_geo._lazy import alias_package

__getattr__ = alias_package(__name__, "carl_geo.polygon_training", globals())
