"""Published CARL weights on demand, the torchgeo way.

``torchgeo.models.get_model("carl", weights=CARL_Weights.CARL_SSL)`` (and :func:`ensure_weights`)
download the published CARL-SSL checkpoint (Zenodo record 18671944, 1.33 GB) into the cache the
first time it is needed:

* cache: ``$CARL_GEO_HOME`` (default ``~/.cache/carl_geo``); ``$CARL_GEO_WEIGHTS`` overrides the
  CARL-SSL file's path;
* resumable (HTTP Range) after a dropped connection, with progress and cancel; bounded (read
  timeouts, requests and bytes) so that a stalled or hostile server ends in one line, never a hang;
  a redirect from https to plain http is refused;
* verified before use: the size and SHA-256 pinned in the :class:`WeightsFile` entry when its
  publisher states them (else "layout checked, checksum not pinned", and the SHA-256 recorded at the
  first download is checked on every later use), ``torch.load(weights_only=True)`` and every key,
  shape and dtype against the published layout (shipped as package data);
* the store writes and deletes only its own names (``<file>.carl-record.json``,
  ``<file>.carl-download``, ``<file>.carl-lock``); a user's ``<file>.json`` or ``.partial`` is left alone;
* ``CARL_GEO_OFFLINE=1`` (true/yes/on) turns downloads off; the error then names the URL and the
  target path. Values other than these and 0/false/no/off/empty are an error.

Command line: ``carl-geo weights list | download | verify | path``.
"""

from carl_geo.weights.download import (
    DownloadCancelled,
    DownloadError,
    DownloadResult,
    download_file,
    make_opener,
)
from carl_geo.weights.layout import CheckpointLayout, TensorSpec, published_layout
from carl_geo.weights.store import (
    CARL_SSL,
    PUBLISHED,
    OfflineError,
    Verification,
    VerificationError,
    WeightsFile,
    cache_dir,
    download_weights,
    ensure_weights,
    get_weights_file,
    offline,
    quick_check,
    status,
    verify_weights,
    weights_path,
)

__all__ = [
    "CARL_SSL", "PUBLISHED", "CheckpointLayout", "DownloadCancelled", "DownloadError", "DownloadResult",
    "OfflineError", "TensorSpec", "Verification", "VerificationError", "WeightsFile", "cache_dir",
    "download_file", "download_weights", "ensure_weights", "get_weights_file", "make_opener", "offline",
    "published_layout", "quick_check", "status", "verify_weights", "weights_path",
]
