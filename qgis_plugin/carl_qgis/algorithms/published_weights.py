"""The published CARL-SSL checkpoint inside Processing: downloaded on first use with progress and
cancel through the algorithm's feedback (``carl_geo.weights``), through QGIS's proxy."""

from __future__ import annotations

from qgis.core import QgsProcessingFeedback

#: Label of the "use the published backbone" choice of the train and extract-features algorithms.
PUBLISHED_CHOICE = "Use the published CARL-SSL backbone (downloaded once, 1.33 GB)"


def published_weights_path(feedback: QgsProcessingFeedback, start: float = 0.0, span: float = 100.0,
                           force: bool = False) -> str:
    """Path of the verified CARL-SSL checkpoint, downloading it first when it is missing (in the child process,
    through QGIS's proxy: :func:`carl_qgis.child.child_environment`).

    Raises:
        QgsProcessingException: cancelled (no partial file is kept), offline (the message names
            the URL and where to put the file), network failure (one line), or a wrong file.
    """
    from carl_qgis.algorithms.base import run_child

    result = run_child("weights", {"force": bool(force)}, feedback, start=start, span=span,
                       cancelled="The download of the CARL-SSL weights was cancelled; no partial file was kept.")
    return str(result["path"])
