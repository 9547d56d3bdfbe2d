"""Weights on demand: where a published weights file lives, fetching it once, and checking it.

* Cache: ``$CARL_GEO_HOME`` (default ``~/.cache/carl_geo``); ``$CARL_GEO_WEIGHTS`` names the
  CARL-SSL file directly (kept for existing set-ups).
* ``CARL_GEO_OFFLINE=1`` (or true/yes/on) turns every download off; a missing file is then an error
  that names the URL and the path to put the file at. 0/false/no/off or nothing allow downloads; any
  other value is an error (a typo must not silently mean "online").
* A download is verified before it is renamed into place: its size (the published one when the
  :class:`WeightsFile` pins it, else the server's), its SHA-256 when pinned, then
  ``torch.load(weights_only=True)`` and every key, shape and dtype against the file's
  :class:`~carl_geo.weights.layout.CheckpointLayout`. Without a pinned SHA-256 only the layout is
  known to be right (a file of zeros in the right shapes passes), and messages say so: "layout
  checked, checksum not pinned".
* The size and SHA-256 are recorded in ``<file>.carl-record.json`` at the first download (or the first
  check of a file put there by hand) and checked on every later use: a file that changed is fetched
  again when it is in the cache, else refused with one line naming it.
* The store writes and deletes only names it owns (``.carl-record.json``, ``.carl-download``,
  ``.carl-lock`` beside the file): a user's ``<file>.json`` or ``<file>.partial`` is never touched.
  A ``<file>.json`` written by earlier versions of carl_geo is still read (never written) when it
  holds a complete record.
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
    DownloadResult,
    Progress,
    download_file,
    download_part_path,
    remove_partial,
)
from carl_geo.weights.layout import CheckpointLayout, load_state_dict, published_layout

DEFAULT_HOME = "~/.cache/carl_geo"
#: ``CARL_GEO_OFFLINE`` values (any case, spaces ignored) that turn downloads off, and that allow them.
OFFLINE_VALUES = ("1", "true", "yes", "on")
ONLINE_VALUES = ("", "0", "false", "no", "off")
#: The record of a file (a name only carl_geo uses), and the name older versions wrote (read only).
RECORD_SUFFIX = ".carl-record.json"
LEGACY_RECORD_SUFFIX = ".json"
#: What a verification says when no SHA-256 is pinned for the file.
NOT_PINNED = "layout checked, checksum not pinned"


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
        size: the published size in bytes, when its publisher states it (None: not pinned). A server
            that announces another size is refused before any byte is written.
        sha256: the published SHA-256 (hex), when known (None: not pinned; the hash is then recorded
            at the first download and checked on every later use).
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
    size: int | None = None
    sha256: str | None = None

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
    # Zenodo's record (https://zenodo.org/api/records/18671944) states the exact size and an MD5, and
    # upstream states no SHA-256; neither value is known to this code base, so nothing is pinned
    # (guessing would refuse the real file). Set size= and sha256= here once they are copied from it.
    size=None,
    sha256=None,
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
    """Whether downloads are turned off: ``CARL_GEO_OFFLINE`` set to 1/true/yes/on (any case).

    Raises:
        CarlGeoError: any value other than those and 0/false/no/off/empty (``CARL_GEO_OFFLINE=2`` must
            not silently mean "online").
    """
    raw = os.environ.get("CARL_GEO_OFFLINE", "")
    value = raw.strip().lower()
    if value in OFFLINE_VALUES:
        return True
    if value in ONLINE_VALUES:
        return False
    raise CarlGeoError(f"CARL_GEO_OFFLINE={raw!r} is not understood: set it to 1, true, yes or on to turn "
                       "downloads off, or to 0, false, no, off or nothing (or unset it) to allow them")


def manifest_path(path: str | os.PathLike) -> Path:
    """``<file>.carl-record.json``: url, size and SHA-256 recorded when carl_geo downloaded the file
    (or first checked a file put there by hand); a name only carl_geo uses."""
    path = Path(path)
    return path.with_name(path.name + RECORD_SUFFIX)


def legacy_manifest_path(path: str | os.PathLike) -> Path:
    """``<file>.json``: where carl_geo recorded downloads before; read (never written) for old caches."""
    path = Path(path)
    return path.with_name(path.name + LEGACY_RECORD_SUFFIX)


def read_manifest(path: str | os.PathLike) -> dict[str, Any]:
    """The record of ``path`` (empty when there is none). An old ``<file>.json`` counts only when it is
    a complete carl_geo record (url, size, SHA-256, download time): any other ``.json`` is the user's."""
    record = _read_json(manifest_path(path))
    if record:
        return record
    legacy = _read_json(legacy_manifest_path(path))
    return legacy if _is_carl_record(legacy) else {}


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _is_carl_record(data: dict[str, Any]) -> bool:
    sha = data.get("sha256")
    return (isinstance(data.get("url"), str) and isinstance(data.get("size"), int)
            and isinstance(data.get("downloaded"), str) and isinstance(sha, str) and len(sha) == 64
            and all(c in "0123456789abcdef" for c in sha))


def write_manifest(path: str | os.PathLike, record: dict[str, Any]) -> Path:
    """Write ``<file>.carl-record.json`` (through a temporary name of its own, so it is never half written)."""
    target = manifest_path(path)
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text(json.dumps(record, indent=1), encoding="utf-8")
    os.replace(tmp, target)
    return target


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
        pinned: the hash matched a pinned (published) SHA-256; else only the layout is known to be
            right, and the hash at most matched the one recorded at download.
    """

    path: Path
    ok: bool
    problems: tuple[str, ...]
    size: int = 0
    sha256: str | None = None
    n_tensors: int = 0
    pinned: bool = False

    @property
    def message(self) -> str:
        """``"OK"`` (pinned checksum matched), ``"OK (layout checked, checksum not pinned)"``, or the problems."""
        if not self.ok:
            return "; ".join(self.problems)
        return "OK" if self.pinned else f"OK ({NOT_PINNED})"


def verify_weights(path: str | os.PathLike, layout: CheckpointLayout, *, expected_size: int | None = None,
                   expected_sha256: str | None = None, check_hash: bool = True) -> Verification:
    """Check a weights file: size and SHA-256 against the pinned values (the arguments: a
    :class:`WeightsFile`'s ``size`` and ``sha256``), else against those recorded at download
    (``<file>.carl-record.json``); then ``torch.load(weights_only=True)`` and every key/shape/dtype
    against ``layout``. Without a pinned SHA-256 the result says "layout checked, checksum not pinned"."""
    path = Path(path)
    if not path.is_file():
        return Verification(path, False, ("no such file; run: carl-geo weights download",))
    size = path.stat().st_size
    record = read_manifest(path)
    problems = _size_problems(size, layout, expected_size, record.get("size"))
    digest = None
    if check_hash and not problems:
        digest, problem = _hash_problem(path, expected_sha256, record.get("sha256"))
        problems += [problem] if problem else []
    pinned = bool(check_hash and expected_sha256)
    if problems:
        return Verification(path, False, tuple(problems), size, digest)
    try:
        state = load_state_dict(path)
    except ValueError as e:
        return Verification(path, False, (str(e),), size, digest)
    problems = [f"does not match the {layout.name}: {p}" for p in layout.problems(state)]
    return Verification(path, not problems, tuple(problems), size, digest, len(state), pinned)


def _size_problems(size: int, layout: CheckpointLayout, pinned: int | None, recorded: Any) -> list[str]:
    problems = []
    if pinned is not None and size != int(pinned):
        problems.append(f"size {size} bytes, the published file has {int(pinned)}")
    elif pinned is None and recorded is not None and size != int(recorded):
        problems.append(f"size {size} bytes, {int(recorded)} were downloaded")
    if size < layout.min_file_bytes:
        problems.append(f"size {size} bytes is less than the {layout.min_file_bytes} bytes of its tensors")
    return problems


def _hash_problem(path: Path, pinned: str | None, recorded: Any) -> tuple[str | None, str | None]:
    """``(SHA-256 or None, problem or None)``: the file's hash against the pinned one, else the recorded
    one (not computed when there is neither)."""
    reference = pinned or (recorded if isinstance(recorded, str) else None)
    if not reference:
        return None, None
    digest = sha256_file(path)
    if digest == reference.lower():
        return digest, None
    if pinned:
        return digest, f"SHA-256 {digest[:16]}... differs from the published {pinned[:16]}..."
    record = manifest_path(path) if manifest_path(path).is_file() else legacy_manifest_path(path)
    return digest, (f"SHA-256 {digest[:16]}... differs from the {reference[:16]}... recorded when it was "
                    f"downloaded: the file changed since (if on purpose, delete {record})")


def quick_check(path: str | os.PathLike, expected_size: int | None = None) -> str | None:
    """A cheap test of a cached file (no hashing, no loading): None when it looks complete, else why not.
    Detects truncation (size differs from the pinned ``expected_size`` or the record, zip directory missing)."""
    import zipfile

    path = Path(path)
    if not path.is_file():
        return f"{path} does not exist"
    manifest = read_manifest(path)
    size = path.stat().st_size
    if expected_size is not None and size != expected_size:
        return f"size {size} bytes, the published file has {expected_size}"
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

    An existing file is fully verified (size and hash against the pinned values or the record, keys
    and shapes against the layout); if that fails and the file is in the cache it is fetched again,
    anywhere else it is refused. The download resumes an earlier ``.carl-download`` and is renamed
    into place only after it verified.

    Args:
        spec: which file: a :class:`WeightsFile` or its name (default: the published CARL-SSL checkpoint).
        path: where to put it (default :func:`weights_path`).
        force: fetch again even if a verified file is present, and start over: this download's own
            partial file (``.carl-download``, e.g. one the server could not resume) is deleted first.
        progress: ``progress(done_bytes, total_bytes)``; return False to cancel.
        log: receives one line per step (default: nothing).
        download_kwargs: passed to :func:`carl_geo.weights.download.download_file` (``retries``,
            ``timeout``, ``opener``...).

    Returns:
        the path of the verified file.

    Raises:
        OfflineError: the file is missing or damaged and ``CARL_GEO_OFFLINE`` is set.
        OutputPathError: a file outside the cache (``$CARL_GEO_WEIGHTS``) fails verification, e.g. it
            changed since it was downloaded (the message names it; it is left as it is).
        DownloadError: the transfer failed (one line with the cause, naming the partial file).
        DownloadCancelled: ``progress`` returned False (no partial file is left).
        VerificationError: the downloaded file is not the expected one.
    """
    say = log or (lambda _msg: None)
    spec = get_weights_file(spec)
    path = Path(path) if path is not None else weights_path(spec)
    layout = spec.layout()
    damage = ""
    if path.exists():
        check = _verify_spec(spec, path, layout)
        if check.ok and not force:
            _record_first_check(spec, path, check, say)
            say(f"{path} is present: {check.message}")
            return path
        if not check.ok:
            _refuse_outside_cache(spec, path, check)
            damage = check.message
            say(f"{path} fails verification ({damage}); fetching it again")
    if offline():
        why = ("the weights file is missing" if not path.exists() else "force asks to fetch the weights file again"
               if not damage else f"the weights file is damaged ({damage}) and must be fetched again")
        raise _offline_error(spec, path, why)
    say(f"downloading {spec.url} ({spec.size_hint or 'size unknown'}) to {path}")
    if force and download_part_path(path).exists():
        say(f"force: deleting the partial download {download_part_path(path)} and starting over")
    settings = {"expected_size": spec.size, "restart": force, "log": say, **download_kwargs}
    result = download_file(spec.url, path, progress=progress, **settings)
    if result.resumed_from:
        say(f"resumed after {result.resumed_from} bytes")
    check = _verify_download(spec, result, layout)
    if not check.ok:
        remove_partial(path)
        raise VerificationError(f"the file downloaded from {spec.url} is not the expected weights: {check.message} "
                                "(it was deleted)")
    _install(spec, path, result, check)
    say(f"saved {path} ({result.size / 1e9:.2f} GB, SHA-256 {str(check.sha256)[:16]}..., {check.n_tensors} "
        f"tensors, {check.message})")
    return path


def _verify_spec(spec: WeightsFile, path: Path, layout: CheckpointLayout) -> Verification:
    """:func:`verify_weights` against ``spec``'s pinned size and SHA-256 (or the record)."""
    return verify_weights(path, layout, expected_size=spec.size, expected_sha256=spec.sha256)


def _refuse_outside_cache(spec: WeightsFile, path: Path, check: Verification) -> None:
    """A file outside the cache that fails verification is the user's: refuse it, never replace it."""
    if _in_cache(path):
        return
    named = f"named by {spec.path_env} or the caller" if spec.path_env else "named by the caller"
    where = f"point {spec.path_env} elsewhere" if spec.path_env else "choose another path"
    raise OutputPathError(
        f"{path} ({named}) is not the {spec.name} weights ({check.message}); the download would replace it, "
        f"and carl_geo replaces only files in its cache {cache_dir()}: move that file away or {where}")


def _verify_download(spec: WeightsFile, result: DownloadResult, layout: CheckpointLayout) -> Verification:
    """Verify a finished download: hashed once, against the pinned SHA-256 when there is one, then
    the size (pinned, else announced) and the layout."""
    digest = sha256_file(result.path)
    if spec.sha256 and digest != spec.sha256.lower():
        problem = f"SHA-256 {digest[:16]}... differs from the published {spec.sha256[:16]}..."
        return Verification(result.path, False, (problem,), result.size, digest)
    size = spec.size if spec.size is not None else result.size
    check = verify_weights(result.path, layout, expected_size=size, check_hash=False)
    return replace(check, sha256=digest, pinned=bool(spec.sha256))


def _install(spec: WeightsFile, path: Path, result: DownloadResult, check: Verification) -> None:
    """Rename the verified download into place with its record."""
    record = {"url": spec.url, "size": result.size, "sha256": check.sha256, "etag": result.etag,
              "downloaded": _now(), "tensors": check.n_tensors, "pinned": check.pinned}
    # order: the old file goes, the new record is written, then the file appears under its name
    path.unlink(missing_ok=True)
    write_manifest(path, record)
    os.replace(result.path, path)


def _record_first_check(spec: WeightsFile, path: Path, check: Verification, say: Callable[[str], Any]) -> None:
    """A verified file without a record (put there by hand): record its size and SHA-256 now, so that
    every later use can tell when it changed. A folder that cannot be written is only reported."""
    if read_manifest(path):
        return
    record = {"url": spec.url, "size": check.size, "sha256": check.sha256 or sha256_file(path), "etag": None,
              "checked": _now(), "tensors": check.n_tensors, "pinned": check.pinned}
    try:
        write_manifest(path, record)
    except OSError as e:
        say(f"cannot record the SHA-256 of {path} ({e.strerror or e}); it is checked only against the layout")


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def _in_cache(path: Path) -> bool:
    """True if ``path`` lies in carl_geo's cache folder (files there are carl_geo's to replace)."""
    try:
        return Path(os.path.realpath(path)).is_relative_to(Path(os.path.realpath(cache_dir())))
    except OSError:
        return False


def ensure_weights(spec: WeightsFile | str = "carl_ssl", *, progress: Progress | None = None,
                   log: Callable[[str], Any] | None = None, **download_kwargs: Any) -> Path:
    """The path of ``spec``'s file, downloading it first when it is missing or damaged; what
    ``torchgeo.models.get_model("carl", weights=...)`` calls.

    A present file is used when it looks complete (:func:`quick_check`) and its SHA-256 matches the
    pinned or recorded one; a file without either is fully verified once and its hash recorded
    (:func:`download_weights`).

    Raises:
        OfflineError: the file is missing and ``CARL_GEO_OFFLINE`` is set (the message names the
            URL and the path).
        OutputPathError: ``$CARL_GEO_WEIGHTS`` names a file that changed since it was recorded.
        DownloadError, DownloadCancelled, VerificationError: see :func:`download_weights`.
    """
    spec = get_weights_file(spec)
    path = weights_path(spec)
    if path.is_file() and quick_check(path, spec.size) is None and _hash_unchanged(spec, path):
        return path
    return download_weights(spec, path=path, progress=progress, log=log, **download_kwargs)


def _hash_unchanged(spec: WeightsFile, path: Path) -> bool:
    """True when ``path``'s SHA-256 equals the pinned one, else the recorded one (False without either)."""
    reference = spec.sha256 or read_manifest(path).get("sha256")
    return isinstance(reference, str) and sha256_file(path) == reference.lower()


def status(spec: WeightsFile | str = "carl_ssl") -> dict[str, Any]:
    """What is on disk for ``spec``: path, present, size, partial bytes, manifest (for listings)."""
    spec = get_weights_file(spec)
    path = weights_path(spec)
    part = download_part_path(path)
    return {"name": spec.name, "path": str(path), "url": spec.url, "present": path.is_file(),
            "size": path.stat().st_size if path.is_file() else 0,
            "partial_bytes": part.stat().st_size if part.is_file() else 0,
            "manifest": read_manifest(path), "description": spec.description, "size_hint": spec.size_hint}


__all__ = [
    "CARL_SSL", "NOT_PINNED", "PUBLISHED", "DownloadCancelled", "DownloadError", "OfflineError", "Verification",
    "VerificationError", "WeightsFile", "cache_dir", "download_weights", "ensure_weights", "get_weights_file",
    "legacy_manifest_path", "manifest_path", "offline", "quick_check", "read_manifest", "status", "verify_weights",
    "weights_path", "write_manifest",
]
