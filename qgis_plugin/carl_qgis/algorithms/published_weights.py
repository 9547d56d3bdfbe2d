"""The published CARL-SSL checkpoint inside Processing: downloaded on first use with progress and
cancel through the algorithm's feedback (``carl_geo.weights``), through QGIS's proxy."""

from __future__ import annotations

from typing import Any

from qgis.core import QgsProcessingException, QgsProcessingFeedback

from carl_qgis.algorithms.base import import_carl, progress_bridge
from carl_qgis.network import proxy_opener

#: Label of the "use the published backbone" choice of the train and extract-features algorithms.
PUBLISHED_CHOICE = "Use the published CARL-SSL backbone (downloaded once, 1.33 GB)"


def published_weights_path(feedback: QgsProcessingFeedback, start: float = 0.0, span: float = 100.0,
                           force: bool = False) -> str:
    """Path of the verified CARL-SSL checkpoint, downloading it first when it is missing.

    Raises:
        QgsProcessingException: cancelled (no partial file is kept), offline (the message names
            the URL and where to put the file), network failure (one line), or a wrong file.
    """
    weights = import_carl("carl_geo.weights")
    kwargs: dict[str, Any] = {}
    opener = proxy_opener()
    if opener is not None:
        kwargs["opener"] = opener
    spec = weights.get_weights_file("carl_ssl")
    feedback.pushInfo(f"CARL-SSL weights: {weights.weights_path(spec)} (from {spec.url})")
    try:
        call = weights.download_weights if force else weights.ensure_weights
        path = call(spec, progress=progress_bridge(feedback, start, span), log=feedback.pushInfo, **kwargs)
    except weights.DownloadCancelled:
        raise QgsProcessingException("The download of the CARL-SSL weights was cancelled; no partial file was "
                                     "kept.") from None
    except (weights.OfflineError, weights.DownloadError, weights.VerificationError) as e:
        raise QgsProcessingException(f"CARL-SSL weights: {e}") from None
    return str(path)
