"""CARL QGIS plugin: Processing algorithms for camera-agnostic segmentation and feature
extraction of multi- and hyperspectral rasters with carl_geo.

Importing this package imports only QGIS modules; carl_geo and torch are imported when an
algorithm runs. When "Install CARL dependencies" has filled the plugin-private environment,
:func:`classFactory` puts it on ``sys.path`` first (a missing installation is reported once, with
a button that opens the installer).
"""


def classFactory(iface):  # noqa: N802 (QGIS API)
    """QGIS entry point: the plugin object for the running QGIS interface (None in qgis_process)."""
    from carl_qgis import environment

    try:
        environment.activate()
        environment.remove_unused_envs(min_age_s=24 * 3600)
    except Exception as e:  # noqa: BLE001 - a broken private folder must not stop QGIS from starting
        from qgis.core import QgsMessageLog

        QgsMessageLog.logMessage(f"CARL: the plugin's private environment could not be used: {e}", "CARL")
    from carl_qgis.plugin import CarlPlugin

    return CarlPlugin(iface)
