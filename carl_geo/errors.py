"""carl_geo's error family, its warning category, and how errors name the user's settings.

Every problem a user can fix raises a :class:`CarlGeoError` (a :class:`ValueError`, so code that
catches ``ValueError`` keeps working) or one of its subclasses, with a message that says what to
fix. The command line prints such an error as one line and exits with status 2; anything else is
a bug and keeps its traceback. A run stopped by the user (progress callback, Cancel button)
raises :class:`Cancelled`.

Messages name settings with :func:`option`, which says ``--tile-size`` on the command line,
``tile_size=`` in Python and the parameter's label in a GUI such as the QGIS plugin (:func:`set_interface`).

This module imports nothing heavy: the CLI loads it before deciding what else it needs.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

__all__ = [
    "CarlGeoError", "Cancelled", "CarlGeoWarning", "InputError", "ModelFileError", "ModelTaskError", "OutputPathError",
    "RasterIOError", "WavelengthError", "check_choice", "interface", "option", "set_interface",
]


class CarlGeoError(ValueError):
    """A problem with the user's input, settings or files; the message says what to fix."""


def check_choice(name: str, value: Any, choices: Iterable[Any]) -> Any:
    """``value`` if it is one of ``choices``, else a :class:`CarlGeoError` worded the same everywhere:
    ``"<name> must be one of a, b, c, got 'x'"``.

    Args:
        name: the setting as the message names it (e.g. ``"mode"``).
        value: the value given.
        choices: the allowed values.
    """
    allowed = tuple(choices)
    if value not in allowed:
        raise CarlGeoError(f"{name} must be one of {', '.join(map(str, allowed))}, got {value!r}")
    return value


class WavelengthError(CarlGeoError):
    """Band wavelengths missing, malformed (text, None, NaN), non-positive, duplicated, in the
    wrong unit, or not one per band."""


class InputError(CarlGeoError):
    """Input data that cannot be used: wrong dtype or shape, empty, all nodata, wrong geometry type."""


class OutputPathError(CarlGeoError):
    """An output that would replace a file the run reads, another output of the run, an existing
    file without ``overwrite``, or that cannot be created where asked."""


class ModelFileError(CarlGeoError):
    """A model / weights file that cannot be used (also :class:`~carl_geo.models.CheckpointError`)."""


class ModelTaskError(ModelFileError):
    """A model file made for another task than asked: a feature extractor (no classes) asked for classes or
    probabilities. Front ends tell it by this class, not by its words."""


class CheckpointError(ModelFileError):
    """A weights file that cannot be used: unreadable, unsafe, or of the wrong layout
    (also importable as ``carl_geo.models.CheckpointError``)."""


class RasterIOError(CarlGeoError):
    """Reading or writing a raster failed (corrupt file, broken VRT, disk full, read-only
    folder); the message names the file and the cause."""


class Cancelled(RuntimeError):
    """The user stopped the run (a progress callback returned False); no output was left behind."""


class CarlGeoWarning(UserWarning):
    """Something that works but probably not as the user expects (e.g. input on another scale than
    the model's normalisation, label features that were ignored). The CLI prints it as one line."""


_INTERFACE = "python"
#: Labels of the settings in a GUI (``{"normalization": "Normalisation", ...}``), for the ``"gui"`` interface.
_LABELS: dict[str, str] = {}
INTERFACES = ("python", "cli", "gui")


def set_interface(name: str, labels: dict[str, str] | None = None) -> str:
    """Name settings in messages for ``"python"`` (``tile_size=256``), ``"cli"`` (``--tile-size 256``) or
    ``"gui"`` (``'Tile size': 256``, with ``labels`` mapping setting names to the GUI's parameter labels; a
    setting without a label keeps its Python name); returns the previous interface. Process-wide (reader threads
    too)."""
    global _INTERFACE, _LABELS
    if name not in INTERFACES:
        raise ValueError(f"interface must be one of {', '.join(INTERFACES)}, got {name!r}")
    old, _INTERFACE = _INTERFACE, name
    _LABELS = {str(k): str(v) for k, v in (labels or {}).items()} if name == "gui" else {}
    return old


def interface() -> str:
    """The interface messages are written for (see :func:`set_interface`)."""
    return _INTERFACE


def option(name: str, cli: str | None = None, python: str | None = None) -> str:
    """A setting as the user types it: ``option("normalization", "scene", "'scene'")`` is
    ``--normalization scene`` on the command line and ``normalization='scene'`` in Python.

    Args:
        name: the Python keyword (``tile_size``); the CLI option is ``--tile-size``.
        cli: example value in CLI syntax, or None for the bare option.
        python: example value in Python syntax (default: ``cli``).
    """
    if _INTERFACE == "cli":
        flag = "--" + name.replace("_", "-")
        return f"{flag} {cli}" if cli is not None else flag
    if _INTERFACE == "gui" and name in _LABELS:
        label = f"'{_LABELS[name]}'"
        return f"{label}: {cli}" if cli is not None else label
    value = python if python is not None else cli
    return f"{name}={value}" if value is not None else name
