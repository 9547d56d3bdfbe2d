"""Sensor presets: band names and centre wavelengths (µm) of common imagers.

This is the one wavelength table of carl_geo: the predictor, the datasets, the trainers and
the QGIS plugin all read it. Values are the nominal band centres of each sensor's published
band table. Hyperspectral presets (EnMAP, PRISMA, AVIRIS-NG) list nominal centres; prefer the
per-scene values from the file's metadata when the file carries them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from carl_geo.errors import CarlGeoError


@dataclass(frozen=True)
class Sensor:
    """A named imager.

    Attributes:
        name: preset key, e.g. "sentinel2_l2a".
        description: human-readable name.
        band_names: band identifiers as the provider names them (e.g. "B04").
        wavelengths: centre wavelength of each band in µm, same order as band_names.
    """

    name: str
    description: str
    band_names: tuple[str, ...]
    wavelengths: tuple[float, ...]

    def __post_init__(self) -> None:
        if len(self.band_names) != len(self.wavelengths):
            raise CarlGeoError(f"{self.name}: {len(self.band_names)} band names but "
                               f"{len(self.wavelengths)} wavelengths")

    @property
    def num_bands(self) -> int:
        return len(self.band_names)

    def band_index(self, name: str) -> int:
        """Index of a band by name; accepts B4/B04/b04 spellings."""
        key = _norm_band(name)
        for i, b in enumerate(self.band_names):
            if _norm_band(b) == key:
                return i
        raise CarlGeoError(f"{self.description} has no band {name!r}; bands are {', '.join(self.band_names)}")

    def select(self, bands: Sequence[str | int] | None = None,
               wavelength_range: tuple[float, float] | None = None) -> "Sensor":
        """A sub-sensor with the given bands (names or 0-based indices, in that order) and/or only
        the bands whose centre lies in wavelength_range (µm, inclusive)."""
        idx = list(range(self.num_bands)) if bands is None else [
            b if isinstance(b, int) else self.band_index(b) for b in bands
        ]
        if wavelength_range is not None:
            lo, hi = wavelength_range
            idx = [i for i in idx if lo <= self.wavelengths[i] <= hi]
        if not idx:
            raise CarlGeoError(f"no {self.description} band left after selecting bands={bands}, "
                               f"range={wavelength_range}")
        return Sensor(self.name, self.description, tuple(self.band_names[i] for i in idx),
                      tuple(self.wavelengths[i] for i in idx))


def _norm_band(name: str) -> str:
    """Canonical band name: upper case, leading zeros of the number removed (B04 -> B4)."""
    s = str(name).strip().upper().replace("BAND", "B").replace("_", "").replace(" ", "")
    head = s.rstrip("0123456789A")
    tail = s[len(head):]
    digits = tail.rstrip("A")
    suffix = tail[len(digits):]
    return head + (str(int(digits)) if digits else "") + suffix


def _numbered(prefix: str, n: int) -> tuple[str, ...]:
    return tuple(f"{prefix}{i + 1:03d}" for i in range(n))


_ENMAP_NM = (
    418.416, 424.043, 429.457, 434.686, 439.758, 444.699, 449.539, 454.306, 459.031, 463.73,
    468.411, 473.08, 477.744, 482.411, 487.087, 491.78, 496.497, 501.243, 506.02, 510.829,
    515.672, 520.551, 525.467, 530.424, 535.422, 540.463, 545.551, 550.687, 555.873, 561.112,
    566.405, 571.756, 577.166, 582.636, 588.171, 593.773, 599.446, 605.193, 611.017, 616.923,
    622.921, 628.987, 635.112, 641.294, 647.537, 653.841, 660.207, 666.637, 673.131, 679.691,
    686.319, 693.014, 699.78, 706.617, 713.524, 720.501, 727.545, 734.654, 741.826, 749.06,
    756.353, 763.703, 771.108, 778.567, 786.078, 793.639, 801.249, 808.905, 816.608, 824.355,
    832.145, 839.976, 847.847, 855.757, 863.703, 871.683, 879.693, 887.729, 895.789, 903.87,
    911.968, 920.081, 928.204, 936.335, 944.47, 952.608, 960.748, 968.892, 977.037, 985.186,
    993.338, 901.961, 911.571, 921.32, 931.203, 941.218, 951.36, 961.628, 972.016, 982.523,
    993.144, 1003.88, 1014.72, 1025.66, 1036.7, 1047.84, 1059.07, 1070.39, 1081.78, 1093.26,
    1104.81, 1116.43, 1128.1, 1139.84, 1151.62, 1163.44, 1175.3, 1187.2, 1199.11, 1211.05, 1223,
    1234.97, 1246.94, 1258.93, 1270.92, 1518.87, 1530.29, 1541.67, 1553.01, 1564.3, 1575.55,
    1586.76, 1597.91, 1609.02, 1620.09, 1631.11, 1642.07, 1653, 1663.87, 1674.7, 1685.47,
    1696.2, 1706.87, 1717.5, 1967.66, 1977.08, 1986.45, 1995.79, 2005.08, 2014.33, 2023.54,
    2032.7, 2041.83, 2050.92, 2059.96, 2068.97, 2077.93, 2086.86, 2095.74, 2104.59, 2113.4,
    2122.17, 2130.9, 2139.6, 2148.26, 2156.88, 2165.47, 2174.02, 2182.53, 2191.01, 2199.45,
    2207.86, 2216.24, 2224.58, 2232.89, 2241.16, 2249.4, 2257.61, 2265.79, 2273.93, 2282.04,
    2290.12, 2298.17, 2306.19, 2314.17, 2322.13, 2330.05, 2337.94, 2345.81, 2353.64, 2361.44,
    2369.21, 2376.95, 2384.66, 2392.34, 2400, 2407.62, 2415.21, 2422.78, 2430.32, 2437.82,
    2445.3
)

_S2_NAMES = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12")
_S2_UM = (0.443, 0.490, 0.560, 0.665, 0.705, 0.740, 0.783, 0.842, 0.865, 0.945, 1.375, 1.610, 2.190)
_PRISMA_UM = tuple(np.round(np.concatenate([np.linspace(0.400, 1.010, 66), np.linspace(0.920, 2.505, 173)]), 4).tolist())
_AVIRIS_NG_UM = tuple(np.round(np.linspace(0.380, 2.510, 425), 4).tolist())

SENSORS: dict[str, Sensor] = {s.name: s for s in (
    Sensor("sentinel2_l1c", "Sentinel-2 MSI Level-1C (13 bands)", _S2_NAMES, _S2_UM),
    Sensor("sentinel2_l2a", "Sentinel-2 MSI Level-2A (12 bands, no B10)",
           _S2_NAMES[:10] + _S2_NAMES[11:], _S2_UM[:10] + _S2_UM[11:]),
    Sensor("landsat8_oli", "Landsat 8/9 OLI reflective bands (B1-B7)",
           ("B1", "B2", "B3", "B4", "B5", "B6", "B7"), (0.443, 0.482, 0.561, 0.655, 0.865, 1.609, 2.201)),
    Sensor("landsat8_oli_tirs", "Landsat 8/9 OLI + TIRS (B1-B11, B8 panchromatic, B10/B11 thermal)",
           ("B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B9", "B10", "B11"),
           (0.443, 0.482, 0.561, 0.655, 0.865, 1.609, 2.201, 0.590, 1.373, 10.895, 12.005)),
    Sensor("landsat7_etm", "Landsat 7 ETM+ reflective bands (B1-B5, B7)",
           ("B1", "B2", "B3", "B4", "B5", "B7"), (0.485, 0.560, 0.660, 0.835, 1.650, 2.220)),
    Sensor("enmap", "EnMAP HSI (202 bands as used by upstream CARL)",
           _numbered("B", len(_ENMAP_NM)), tuple(round(v / 1000.0, 6) for v in _ENMAP_NM)),
    Sensor("prisma", "PRISMA HSI (239 nominal bands: 66 VNIR 400-1010 nm, 173 SWIR 920-2505 nm)",
           _numbered("B", len(_PRISMA_UM)), _PRISMA_UM),
    Sensor("aviris_ng", "AVIRIS-NG (425 nominal bands, 380-2510 nm, 5 nm)",
           _numbered("B", len(_AVIRIS_NG_UM)), _AVIRIS_NG_UM),
    Sensor("rgb", "plain RGB camera (red, green, blue)", ("R", "G", "B"), (0.665, 0.560, 0.490)),
    Sensor("rgbn", "RGB + near infrared (red, green, blue, NIR)", ("R", "G", "B", "N"), (0.665, 0.560, 0.490, 0.842)),
)}

#: Alternative spellings users type.
ALIASES = {"sentinel2": "sentinel2_l2a", "s2": "sentinel2_l2a", "s2_l2a": "sentinel2_l2a", "s2_l1c": "sentinel2_l1c",
           "landsat8": "landsat8_oli", "landsat9": "landsat8_oli", "landsat9_oli": "landsat8_oli",
           "landsat7": "landsat7_etm", "avirisng": "aviris_ng", "aviris-ng": "aviris_ng"}


def get_sensor(name: str) -> Sensor:
    """A preset by name (case-insensitive; aliases such as "s2" or "landsat9" accepted)."""
    key = name.strip().lower().replace(" ", "_")
    key = ALIASES.get(key, key)
    try:
        return SENSORS[key]
    except KeyError:
        raise CarlGeoError(f"unknown sensor preset {name!r}; known presets: {', '.join(sorted(SENSORS))}") from None
