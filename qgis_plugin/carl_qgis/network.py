"""QGIS's proxy settings (Settings > Options > Network) for pip and for the weights download."""

from __future__ import annotations

import urllib.parse
import urllib.request
from typing import Any


def qgis_proxy_url(settings: Any = None) -> str | None:
    """``http://user:password@host:port`` of the HTTP proxy configured in QGIS, or None (no proxy,
    or a type other than an HTTP proxy: then the environment's HTTPS_PROXY still applies)."""
    if settings is None:
        from qgis.core import QgsSettings

        settings = QgsSettings()
    enabled = str(settings.value("proxy/proxyEnabled", False)).lower() in ("true", "1")
    host = str(settings.value("proxy/proxyHost", "") or "").strip()
    kind = str(settings.value("proxy/proxyType", "HttpProxy") or "HttpProxy")
    if not enabled or not host or kind not in ("HttpProxy", "HttpCachingProxy", "DefaultProxy"):
        return None
    port = str(settings.value("proxy/proxyPort", "") or "").strip()
    user = str(settings.value("proxy/proxyUser", "") or "")
    password = str(settings.value("proxy/proxyPassword", "") or "")
    auth = ""
    if user:
        secret = ":" + urllib.parse.quote(password, safe="") if password else ""
        auth = urllib.parse.quote(user, safe="") + secret + "@"
    return f"http://{auth}{host}{':' + port if port else ''}"


def proxy_opener(proxy: str | None = None) -> urllib.request.OpenerDirector | None:
    """A urllib opener through QGIS's proxy (None when QGIS has none: urllib's defaults apply)."""
    proxy = proxy if proxy is not None else qgis_proxy_url()
    if not proxy:
        return None
    return urllib.request.build_opener(urllib.request.ProxyHandler({"http": proxy, "https": proxy}))
