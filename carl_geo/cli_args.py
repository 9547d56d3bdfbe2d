"""Option syntax shared by every ``carl-geo`` sub-command: one parser per kind of value.

* ``--wavelengths``: :func:`wavelength_list`, one number per band, separated by commas (spaces and
  semicolons work too); micrometres, or nanometres (values > 100) converted to µm;
* ``--bands``: :func:`add_bands_argument`, 1-based band numbers or band names separated by commas:
  ``--bands 4,3,2`` or ``--bands B04,B03,B02`` (``train`` also takes them space-separated,
  ``--bands 4 3 2``; ``predict`` takes one value because SRC and DST may follow the option);
* counts: :func:`positive_int`.

Imports nothing heavy (``carl-geo --help`` does not load torch).
"""

from __future__ import annotations

import argparse
import re
from typing import Any

from carl_geo.errors import CarlGeoError
from carl_geo.io.wavelength_text import parse_wavelength_list

#: How ``--bands`` is documented everywhere.
BANDS_HELP = ("bands to use: 1-based numbers or names separated by commas, e.g. 4,3,2 or B04,B03,B02 "
              "(default all)")


def wavelength_list(text: str) -> list[float]:
    """``"0.49,0.56,0.665"`` (µm) or ``"490,560,665"`` (nm, converted) -> µm values."""
    try:
        values = parse_wavelength_list(text)
    except CarlGeoError as e:
        if "mix units" in str(e):
            raise argparse.ArgumentTypeError(str(e)) from None
        values = []
    if not values:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers (µm), got {text!r}")
    bad = [v for v in values if not v > 0]
    if bad:
        raise argparse.ArgumentTypeError(f"wavelengths must be positive (µm), got {', '.join(f'{v:g}' for v in bad)}")
    return values


#: Options whose value may start with "-" (a negative number the user typed by mistake must reach the value check,
#: not argparse's "expected one argument").
VALUE_OPTIONS = ("--wavelengths",)


def join_option_values(argv: list[str], options: tuple[str, ...] = VALUE_OPTIONS) -> list[str]:
    """``["--wavelengths", "-0.49,0.56"]`` -> ``["--wavelengths=-0.49,0.56"]`` for :data:`VALUE_OPTIONS`, so that a
    value starting with "-" is read as the option's value."""
    out: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        nxt = argv[i + 1] if i + 1 < len(argv) else None
        if arg in options and nxt is not None and nxt.startswith("-") and re.match(r"^-[\d.]", nxt):
            out.append(f"{arg}={nxt}")
            i += 2
            continue
        out.append(arg)
        i += 1
    return out


def band_items(text: str) -> list[int | str]:
    """``"4,3,2"`` -> ``[4, 3, 2]``; ``"B04, B03"`` -> ``["B04", "B03"]`` (digits become 1-based numbers);
    without commas, ``"4 3 2"`` -> ``[4, 3, 2]`` while a name with a space (``"Band 1"``) stays whole."""
    text = text.strip()
    parts = re.split(r"\s*[,;]\s*", text)
    if len(parts) == 1 and all(t.isdigit() for t in text.split()):
        parts = text.split()
    return [int(v) if v.isdigit() else v for v in parts if v]


class _BandsAction(argparse.Action):
    """Collect ``--bands`` values given as one comma list or as several (space-separated) values."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        items = values if isinstance(values, list) else [values]
        bands = [b for item in items for b in band_items(str(item))]
        if not bands:
            parser.error(f"argument {option_string}: expected at least one band number or name")
        setattr(namespace, self.dest, bands)


def add_bands_argument(parser: Any, *, one_value: bool, help: str = BANDS_HELP) -> None:
    """Add ``--bands`` to ``parser`` (a parser or argument group): a comma list; with
    ``one_value=False`` also several space-separated values."""
    parser.add_argument("--bands", action=_BandsAction, nargs=None if one_value else "+", metavar="B,B,...",
                        help=help)


def positive_int(value: str) -> int:
    """An integer >= 1."""
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}")
    return n
