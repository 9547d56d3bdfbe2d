"""CARL QGIS plugin: Processing algorithms for camera-agnostic segmentation and feature
extraction of multi- and hyperspectral rasters with carl_geo.

Importing this package imports only QGIS modules; carl_geo and torch are imported when an
algorithm runs (a missing installation is reported once, with the pip command to fix it).
"""


def classFactory(iface):  # noqa: N802 (QGIS API)
    """QGIS entry point: the plugin object for the running QGIS interface (None in qgis_process)."""
    from carl_qgis.plugin import CarlPlugin

    return CarlPlugin(iface)
