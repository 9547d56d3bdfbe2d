"""Names of the model choices, without importing torch (the command line and the QGIS plugin build
their option lists from these; :data:`carl_geo.models.config.CONFIGS` and
:data:`carl_geo.models.segmentation.HEADS` are keyed by the same names, a test keeps them equal)."""

#: Backbone configurations (:func:`carl_geo.models.get_config`).
CONFIG_NAMES: tuple[str, ...] = ("published", "tiny")
#: Segmentation heads (:class:`carl_geo.models.CARLSegmenter`).
HEAD_NAMES: tuple[str, ...] = ("linear", "progressive", "upernet")
