"""Make a fresh installation usable in the running QGIS (no restart, no path edited by hand)."""

from __future__ import annotations

import sys
from pathlib import Path

from carl_qgis import deps, environment


def use_installed_environment(base: Path | None = None) -> str:
    """Activate the installed env, forget cached dependency checks and preset names. Returns a note
    for the user: empty, or "restart QGIS" when torch/carl_geo were already loaded from elsewhere."""
    site = environment.activate(base)
    deps.reset()
    from carl_qgis.algorithms.base import reset_sensor_presets

    reset_sensor_presets()
    if site is None:
        return ""
    stale = [name for name in ("torch", "carl_geo") if name in sys.modules
             and not str(getattr(sys.modules[name], "__file__", "") or "").startswith(str(site))]
    if stale:
        return (f"{' and '.join(stale)} were already loaded from another place in this QGIS session: restart QGIS "
                "to use the new installation.")
    return ""
