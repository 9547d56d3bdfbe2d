"""Weights on demand: where a published weights file lives, fetching it once, and checking it.

* Cache: ``$CARL_GEO_HOME`` (default ``~/.cache/carl_geo``); ``$CARL_GEO_WEIGHTS`` names the
  CARL-SSL file directly (kept for existing set-ups).
* ``CARL_GEO_OFFLINE=1`` turns every download off; a missing file is then an error that names
  the URL and the path to put the file at.
* A download is verified before it is renamed into place: its size (as announced by the server),
  then ``torch.load(weights_only=True)`` and every key, shape and dtype against the file's
  :class:`~carl_geo.weights.layout.CheckpointLayout`. The size and SHA-256 are recorded in
  ``<file>.json``; a later check that finds a different size or hash re-fetches the file.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from carl_geo.errors import CarlGeoError, CheckpointError, OutputPathError
from carl_geo.weights.download import (
    DownloadCancelled,
    DownloadError,
    Progress,
    download_file,
    partial_path,
    remove_partial,
)
from carl_geo.weights.layout import CheckpointLayout, load_state_dict, published_layout

DEFAULT_HOME = "~/.cache/carl_geo"
OFFLINE_VALUES = ("1", "true", "yes", "on")


class OfflineError(FileNotFoundError):
    """The weights file is missing and downloads are turned off (``CARL_GEO_OFFLINE``)."""


class VerificationError(CheckpointError):
    """A weights file that is not the expected one (size, hash, keys, shapes or dtypes differ)."""


@dataclass(frozen=True)
class WeightsFile:
    """A published weights file that carl_geo can fetch.

    Attributes:
        name: short id used on the command line (``carl-geo weights download carl_ssl``).
        url: where it is published.
        filename: its name in the cache folder.
        layout: loads the expected :class:`CheckpointLayout` (called when a file is verified).
        description: one line for listings.
        size_hint: human-readable size for messages (``"1.33 GB"``).
        path_env: an environment variable that, when set, is the file's path (overrides the cache).
        config: the carl_geo architecture of the weights (``carl_geo.get_config`` name).
    """

    name: str
    url: str
    filename: str
    layout: Callable[[], CheckpointLayout]
    description: str = ""
    size_hint: str = ""
    path_env: str | None = None
    config: str = "published"
    meta: dict[str, Any] = field(default_factory=dict)

    def with_(self, **changes: Any) -> WeightsFile:
        """A copy with some fields changed (e.g. another URL for a mirror, a test layout)."""
        return replace(self, **changes)


CARL_SSL = WeightsFile(
    name="carl_ssl",
    url="https://zenodo.org/records/18671944/files/ssl_checkpoint_carl.ckpt",
    filename="ssl_checkpoint_carl.ckpt",
    layout=published_layout,
    description="CARL-SSL backbone (IMSY-DKFZ, ICLR 2026): student, teacher and SSL predictors",
    size_hint="1.33 GB",
    path_env="CARL_GEO_WEIGHTS",
    config="published",
)

#: The weights files carl_geo knows, by :attr:`WeightsFile.name`.
PUBLISHED: dict[str, WeightsFile] = {CARL_SSL.name: CARL_SSL}


def get_weights_file(name: str | WeightsFile) -> WeightsFile:
    """The :class:`WeightsFile` called ``name`` in :data:`PUBLISHED` (looked up at call time); a
    WeightsFile is returned as it is."""
    if isinstance(name, WeightsFile):
        return name
    try:
        return PUBLISHED[name]
    except KeyError:
        raise CarlGeoError(f"unknown weights {name!r}; known: {', '.join(PUBLISHED)}") from None


def cache_dir() -> Path:
    """``$CARL_GEO_HOME`` (default ``~/.cache/carl_geo``)."""
    return Path(os.environ.get("CARL_GEO_HOME") or DEFAULT_HOME).expanduser()


def weights_path(spec: WeightsFile | str = "carl_ssl") -> Path:
    """Where ``spec``'s file is (or will be): ``$<path_env>`` if set, else ``cache_dir()/<filename>``."""
    spec = get_weights_file(spec)
    if spec.path_env and os.environ.get(spec.path_env):
        return Path(os.environ[spec.path_env]).expanduser()
    return cache_dir() / spec.filename


def offline() -> bool:
    """Whether downloads are turned off (``CARL_GEO_OFFLINE`` set to 1/true/yes/on)."""
    return os.environ.get("CARL_GEO_OFFLINE", "").strip().lower() in OFFLINE_VALUES


def manifest_path(path: str | os.PathLike) -> Path:
    """``<file>.json``: url, size and SHA-256 recorded when the file was downloaded."""
    path = Path(path)
    return path.with_name(path.name + ".json")


def read_manifest(path: str | os.PathLike) -> dict[str, Any]:
    try:
        data = json.loads(manifest_path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def sha256_file(path: str | os.PathLike, chunk_bytes: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class Verification:
    """Result of :func:`verify_weights`.

    Attributes:
        path: the checked file.
        ok: no problem found.
        problems: one line per problem.
        size: file size in bytes (0 when missing).
        sha256: the file's hash when it was computed.
        n_tensors: tensors in its state dict (0 when it could not be read).
    """

    path: Path
    ok: bool
    problems: tuple[str, ...]
    size: int = 0
    sha256: str | None = None
    n_tensors: int = 0

    @property
    def message(self) -> str:
        return "OK" if self.ok else "; ".join(self.problems)


def verify_weights(path: str | os.PathLike, layout: CheckpointLayout, *, expected_size: int | None = None,
                   expected_sha256: str | None = None, check_hash: bool = True) -> Verification:
    """Check a weights file: size, hash (against the arguments, else against ``<file>.json`` when it
    exists), then ``torch.load(weights_only=True)`` and every key/shape/dtype against ``layout``."""
    path = Path(path)
    if not path.is_file():
        return Verification(path, False, ("no such file; run: carl-geo weights download",))
    size = path.stat().st_size
    manifest = read_manifest(path)
    expected_size = expected_size if expected_size is not None else manifest.get("size")
    expected_sha256 = expected_sha256 or manifest.get("sha256")
    problems: list[str] = []
    if expected_size is not None and size != int(expected_size):
        problems.append(f"size {size} bytes, expected {int(expected_size)}")
    if size < layout.min_file_bytes:
        problems.append(f"size {size} bytes is less than the {layout.min_file_bytes} bytes of its tensors")
    digest = None
    if check_hash and expected_sha256 and not problems:
        digest = sha256_file(path)
        if digest != expected_sha256:
            problems.append(f"SHA-256 {digest[:16]}... differs from the recorded {str(expected_sha256)[:16]}...")
    if problems:
        return Verification(path, False, tuple(problems), size, digest)
    try:
        state = load_state_dict(path)
    except ValueError as e:
        return Verification(path, False, (str(e),), size, digest)
    problems = [f"does not match the {layout.name}: {p}" for p in layout.problems(state)]
    return Verification(path, not problems, tuple(problems), size, digest, len(state))


def quick_check(path: str | os.PathLike) -> str | None:
    """A cheap test of a cached file (no hashing, no loading): None when it looks complete, else why not.
    Detects truncation (size differs from ``<file>.json``, zip directory missing)."""
    import zipfile

    path = Path(path)
    if not path.is_file():
        return f"{path} does not exist"
    manifest = read_manifest(path)
    size = path.stat().st_size
    if manifest.get("size") is not None and size != int(manifest["size"]):
        return f"size {size} bytes, {int(manifest['size'])} were downloaded"
    if not zipfile.is_zipfile(path):
        return "not a complete torch checkpoint (no zip directory at its end)"
    return None


def _offline_error(spec: WeightsFile, path: Path, why: str) -> OfflineError:
    return OfflineError(
        f"{why}: {path}; downloads are turned off (CARL_GEO_OFFLINE is set). Fetch {spec.url} on a machine "
        f"with internet access ({spec.size_hint or 'large file'}) and put it at {path}, or unset CARL_GEO_OFFLINE.")


def download_weights(spec: WeightsFile | str = "carl_ssl", *, path: str | os.PathLike | None = None,
                     force: bool = False,
                     progress: Progress | None = None, log: Callable[[str], Any] | None = None,
                     **download_kwargs: Any) -> Path:
    """Make sure ``spec``'s file is present and verified, downloading it when needed.

    An existing file is fully verified (hash against ``<file>.json``, keys/shapes against the
    layout); if that fails it is deleted and fetched again. The download resumes an earlier
    ``.partial`` and is renamed into place only after it verified.

    Args:
        spec: which file: a :class:`WeightsFile` or its name (default: the published CARL-SSL checkpoint).
        path: where to put it (default :func:`weights_path`).
        force: fetch again even if a verified file is present.
        progress: ``progress(done_bytes, total_bytes)``; return False to cancel.
        log: receives one line per step (default: nothing).
        download_kwargs: passed to :func:`carl_geo.weights.download.download_file` (``retries``,
            ``timeout``, ``opener``...).

    Returns:
        the path of the verified file.

    Raises:
        OfflineError: the file is missing and ``CARL_GEO_OFFLINE`` is set.
        DownloadError: the transfer failed (one line with the cause).
        DownloadCancelled: ``progress`` returned False (no partial file is left).
        VerificationError: the downloaded file is not the expected one.
    """
    say = log or (lambda _msg: None)
    spec = get_weights_file(spec)
    path = Path(path) if path is not None else weights_path(spec)
    layout = spec.layout()
    if path.exists():
        check = verify_weights(path, layout)
        if check.ok and not force:
            say(f"{path} is present and verified")
            return path
        if not check.ok and not _in_cache(path):
            raise OutputPathError(
                f"{path} (named by {spec.path_env} or the caller) is not the {spec.name} weights "
                f"({check.message}); the download would replace it, and carl_geo replaces only files in its cache "
                f"{cache_dir()}: move that file away or point {spec.path_env} elsewhere")
        if not check.ok:
            say(f"{path} fails verification ({check.message}); fetching it again")
    if offline():
        raise _offline_error(spec, path, "the weights file is missing" if not path.exists()
                             else "the weights file is damaged and must be fetched again")
    say(f"downloading {spec.url} ({spec.size_hint or 'size unknown'}) to {path}")
    result = download_file(spec.url, path, progress=progress, **download_kwargs)
    if result.resumed_from:
        say(f"resumed after {result.resumed_from} bytes")
    digest = sha256_file(result.path)
    check = verify_weights(result.path, layout, expected_size=result.size, expected_sha256=digest)
    if not check.ok:
        remove_partial(path)
        raise VerificationError(f"the file downloaded from {spec.url} is not the expected weights: {check.message}")
    manifest = {"url": spec.url, "size": result.size, "sha256": digest, "etag": result.etag,
                "downloaded": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                "tensors": check.n_tensors}
    # order: the old file goes, the new manifest is written, then the file appears under its name
    path.unlink(missing_ok=True)
    manifest_path(path).write_text(json.dumps(manifest, indent=1), encoding="utf-8")
    os.replace(result.path, path)
    say(f"saved {path} ({result.size / 1e9:.2f} GB, SHA-256 {digest[:16]}..., {check.n_tensors} tensors verified)")
    return path


def _in_cache(path: Path) -> bool:
    """True if ``path`` lies in carl_geo's cache folder (files there are carl_geo's to replace)."""
    try:
        return Path(os.path.realpath(path)).is_relative_to(Path(os.path.realpath(cache_dir())))
    except OSError:
        return False


def ensure_weights(spec: WeightsFile | str = "carl_ssl", *, progress: Progress | None = None,
                   log: Callable[[str], Any] | None = None, **download_kwargs: Any) -> Path:
    """The path of ``spec``'s file, downloading it first when it is missing or visibly damaged
    (:func:`quick_check`); what ``torchgeo.models.get_model("carl", weights=...)`` calls.

    Raises:
        OfflineError: the file is missing and ``CARL_GEO_OFFLINE`` is set (the message names the
            URL and the path).
        DownloadError, DownloadCancelled, VerificationError: see :func:`download_weights`.
    """
    spec = get_weights_file(spec)
    path = weights_path(spec)
    if path.is_file() and quick_check(path) is None:
        return path
    return download_weights(spec, path=path, progress=progress, log=log, **download_kwargs)


def status(spec: WeightsFile | str = "carl_ssl") -> dict[str, Any]:
    """What is on disk for ``spec``: path, present, size, partial bytes, manifest (for listings)."""
    spec = get_weights_file(spec)
    path = weights_path(spec)
    part = partial_path(path)
    return {"name": spec.name, "path": str(path), "url": spec.url, "present": path.is_file(),
            "size": path.stat().st_size if path.is_file() else 0,
            "partial_bytes": part.stat().st_size if part.is_file() else 0,
            "manifest": read_manifest(path), "description": spec.description, "size_hint": spec.size_hint}


__all__ = [
    "CARL_SSL", "PUBLISHED", "DownloadCancelled", "DownloadError", "OfflineError", "Verification",
    "VerificationError", "WeightsFile", "cache_dir", "download_weights", "ensure_weights", "get_weights_file",
    "manifest_path", "offline", "quick_check", "read_manifest", "status", "verify_weights", "weights_path",
]
