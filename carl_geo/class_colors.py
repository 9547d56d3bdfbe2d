"""Display colours of classes: the colours map readers expect for class names that say what they are (water blue,
forest dark green, built-up red, ...), distinct matplotlib colours for the rest.

A model trained from an analyst's polygons knows only the class names of the label field; with tab10 colours in
class order the NC model drew the sea in blue as "developed" and its water class in brown. :func:`class_colors`
gives each name that contains a land-cover keyword (:data:`LAND_COVER_COLORS`, English, case-insensitive) its
conventional colour, once per colour (``crop_01`` ... ``crop_16`` do not all turn yellow), and the other classes
tab10 / tab20 colours in order, skipping those close to a colour already used. Names without keywords get exactly
:func:`default_colors`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

RGB = tuple[int, int, int]

#: (keywords, RGB 0-255), first match wins: a class whose name has a word that is a keyword, or starts with one of
#: at least 4 letters ("grassland", "Mixed_forest", "built-up"; "season" is not "sea"), gets the colour (the
#: shipped NC and Sentinel-2 sample scenes take their colours from here).
LAND_COVER_COLORS: tuple[tuple[tuple[str, ...], RGB], ...] = (
    (("wetland", "marsh", "swamp", "bog", "mangrove", "fen"), (100, 180, 190)),
    (("water", "river", "lake", "sea", "ocean", "reservoir", "pond", "canal"), (40, 90, 210)),
    (("forest", "tree", "wood", "woodland", "conifer", "deciduous", "broadleaf"), (20, 100, 35)),
    (("shrub", "scrub", "bush", "heath"), (130, 130, 30)),
    (("meadow", "pasture"), (120, 190, 80)),
    (("grass", "herbaceous", "rangeland", "lawn", "vegetation"), (170, 225, 120)),
    (("crop", "farm", "agricultur", "cultivated", "arable", "orchard", "vineyard", "cropland", "paddy"),
     (235, 215, 60)),
    (("urban", "developed", "built", "residential", "industrial", "commercial", "settlement", "building",
      "impervious", "road", "city"), (200, 40, 40)),
    (("sediment", "sand", "beach", "bare", "soil", "barren", "rock", "desert", "quarry", "dune"), (210, 180, 140)),
    (("snow", "ice", "glacier"), (235, 240, 250)),
    (("cloud",), (200, 200, 200)),
    (("shadow",), (60, 60, 60)),
)
#: A fallback colour closer than this (Euclidean, RGB 0-255) to a colour already used is skipped.
MIN_DISTANCE = 60.0


def default_colors(n: int) -> list[RGB]:
    """``n`` distinct RGB colours (matplotlib's tab10/tab20)."""
    from matplotlib import colormaps

    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return [tuple(int(round(255 * c)) for c in cmap(i % cmap.N)[:3]) for i in range(n)]  # type: ignore[misc]


def land_cover_color(name: str) -> RGB | None:
    """The conventional colour of a class called ``name``, or None when no keyword matches."""
    words = re.sub(r"[^a-z]+", " ", name.lower()).split()
    for keywords, rgb in LAND_COVER_COLORS:
        if any(w == k or (len(k) >= 4 and w.startswith(k)) for w in words for k in keywords):
            return rgb
    return None


def class_colors(names: Sequence[str]) -> list[RGB]:
    """One RGB colour (0-255) per class name: conventional land-cover colours where the name says what the class
    is (each colour once), distinct tab10 / tab20 colours for the rest."""
    n = len(names)
    colors: list[RGB | None] = [None] * n
    used: list[RGB] = []
    for i, name in enumerate(names):
        rgb = land_cover_color(str(name))
        if rgb is not None and rgb not in used:
            colors[i] = rgb
            used.append(rgb)
    if not used:
        return default_colors(n)
    if len(used) == n:  # every class named: no fallback colours (and no matplotlib import)
        return used
    pool = default_colors(10)
    pool += [c for c in default_colors(20) if c not in pool]

    def far(c: RGB) -> bool:
        return all(sum((a - b) ** 2 for a, b in zip(c, u)) ** 0.5 >= MIN_DISTANCE for u in used)

    for i in range(n):
        if colors[i] is None:
            pick = next((c for c in pool if c not in used and far(c)), None)
            if pick is None:
                pick = next((c for c in pool if c not in used), pool[i % len(pool)])
            colors[i] = pick
            used.append(pick)
    return [c for c in colors if c is not None]
