"""Which bands of a raster to read, and their centre wavelengths (µm).

CARL needs one wavelength (µm) per input band. This module finds them, in this order
(first match wins; it reads metadata only, never pixels):

1. an explicit list of wavelengths (one per selected band);
2. a sensor preset from :mod:`carl_geo.sensors` (bands matched by the file's band
   descriptions such as ``"B04"``/``"B8A"``, or by position when the band counts agree);
3. the file's own metadata, per band:

   * ENVI headers: ``wavelength`` + ``wavelength_units`` (nm, µm, mm, wavenumber) in the
     ``ENVI`` domain, or per band in the default domain (older GDAL) -- full precision, so these
     win over GDAL's 1 nm-rounded copy in the IMAGERY domain,
   * GDAL's ``IMAGERY`` domain ``CENTRAL_WAVELENGTH_UM`` per band (GDAL >= 3.10),
   * band descriptions (``"B02"``, ``"B8A"``, ...) matched against a sensor preset named by the
     dataset tag ``CARL_SENSOR_PRESET``, by the model's sensor, or by the one preset family whose
     band names fit all descriptions;

4. the model's training wavelengths, when the selected band count matches.

Public API (used by the predictor, the datasets and the trainers):

* :func:`resolve_wavelengths` -> :class:`BandSelection` (band indexes, wavelengths, names, sensor);
* :func:`resolve_band_selection` -> ``(band_indexes_1based, wavelengths_um, band_names)``;
* :func:`file_band_wavelengths` -> per-band µm from metadata (None where unknown);
* :func:`parse_wavelength_list` -> list of µm from text such as ``"{450, 550}"`` or ``"0.49,0.56"``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import rasterio
import rasterio.errors

from carl_geo.errors import CarlGeoError, InputError, RasterIOError, WavelengthError, option
from carl_geo.io.wavelength_text import parse_wavelength_list
from carl_geo.sensors import SENSORS, Sensor, _norm_band, get_sensor
from carl_geo.validation import check_wavelength_list

#: Dataset tag naming the carl_geo sensor preset of a file (written by carl_geo tools).
SENSOR_TAG = "CARL_SENSOR_PRESET"

@dataclass(frozen=True)
class BandSelection:
    """The bands to read and their wavelengths.

    Attributes:
        band_indexes: 1-based band indexes of the raster, in model input order.
        wavelengths: centre wavelength (µm) of each selected band.
        band_names: names of the selected bands (file descriptions or preset names), or None.
        sensor: the sensor preset name that was used, or None.
        source: where the wavelengths came from: ``"explicit"``, ``"sensor"``,
            ``"metadata"`` or ``"model"``.
    """

    band_indexes: list[int]
    wavelengths: list[float]
    band_names: list[str] | None
    sensor: str | None
    source: str

    def __iter__(self) -> Iterator[Any]:  # unpack as (indexes, wavelengths, names)
        return iter((self.band_indexes, self.wavelengths, self.band_names))


def check_wavelengths(wavelengths: Sequence[float]) -> list[float]:
    """Wavelengths as floats, checked to be finite, positive, distinct µm values
    (:func:`carl_geo.validation.check_wavelength_list`).

    Raises:
        WavelengthError: with a message saying what to fix.
    """
    return check_wavelength_list(wavelengths)


def open_raster(src: str | os.PathLike) -> Any:
    """``rasterio.open(src)`` with clear errors: FileNotFoundError for a missing local file,
    :class:`~carl_geo.errors.RasterIOError` (a ValueError) for a file GDAL cannot read. GDAL URIs
    (``netcdf:f.nc:var``, ``/vsi...``) pass through."""
    text = os.fspath(src)
    is_uri = "://" in text or text.startswith("/vsi") or bool(re.match(r"^[A-Za-z0-9_]{2,}:", text))
    if not is_uri and not os.path.exists(text):
        raise FileNotFoundError(f"raster not found: {text}")
    if not is_uri and os.path.isdir(text):
        raise InputError(f"{text} is a folder; give a raster file (GeoTIFF, VRT, ...)")
    try:
        return rasterio.open(text)
    except rasterio.errors.RasterioIOError as e:
        cause = str(e).splitlines()[0] if str(e) else "GDAL cannot open it"
        raise RasterIOError(f"cannot read raster {text}: {cause}") from None


@contextmanager
def _opened(src: Any) -> Iterator[Any]:
    if isinstance(src, (str, os.PathLike)):
        with open_raster(src) as ds:
            yield ds
    else:
        yield src


def _envi_dataset_wavelengths(src: Any) -> list[float] | None:
    try:
        tags = {k.lower(): v for k, v in src.tags(ns="ENVI").items()}
    except Exception:  # driver without an ENVI domain
        return None
    if "wavelength" not in tags:
        return None
    units = tags.get("wavelength_units") or tags.get("wavelength units")
    if units and units.strip().lower() == "index":
        return None
    values = parse_wavelength_list(tags["wavelength"], units)
    return values if len(values) == src.count else None


def _band_tag_wavelength(src: Any, bidx: int) -> float | None:
    """µm from a per-band ENVI-style ``wavelength`` tag, else GDAL's IMAGERY ``CENTRAL_WAVELENGTH_UM``
    (which GDAL derives from ENVI headers rounded to 1 nm, so the ENVI value wins)."""
    tags = {k.lower(): v for k, v in src.tags(bidx).items()}
    for key in ("wavelength", "central_wavelength"):
        if key in tags:
            units = tags.get("wavelength_units") or tags.get(f"{key}_units")
            if units and units.strip().lower() == "index":
                return None
            try:
                return parse_wavelength_list(tags[key], units)[0]
            except (ValueError, IndexError):
                return None
    try:
        imagery = src.tags(bidx, ns="IMAGERY")
    except Exception:
        imagery = {}
    if "CENTRAL_WAVELENGTH_UM" in imagery:
        try:
            return float(imagery["CENTRAL_WAVELENGTH_UM"])
        except ValueError:
            pass
    return None


def _file_sensor_hint(src: Any) -> str | None:
    value = src.tags().get(SENSOR_TAG)
    if value:
        try:
            return get_sensor(value).name
        except ValueError:
            return None
    return None


def _descriptions(src: Any) -> list[str | None]:
    return [d if d else None for d in (src.descriptions or (None,) * src.count)]


def match_preset(names: Sequence[str | None], preset: Sensor, exact: bool = False) -> list[float] | None:
    """Wavelengths of ``names`` in ``preset``, or None unless every name is one of its bands
    (``exact``: same spelling up to case, so "B02" fits Sentinel-2 but not Landsat's "B2")."""
    if not names or any(n is None for n in names):
        return None
    norm = (lambda b: str(b).strip().upper()) if exact else _norm_band
    table = {norm(b): w for b, w in zip(preset.band_names, preset.wavelengths)}
    keys = [norm(n) for n in names]
    if not all(k in table for k in keys):
        return None
    return [table[k] for k in keys]


def _wavelengths_from_descriptions(names: Sequence[str | None], hints: Sequence[str | None]
                                   ) -> tuple[list[float], str] | None:
    """Wavelengths from band names: the first hinted preset that fits all names; else the presets
    whose band names fit exactly (then up to spelling, B4 == B04), when they all agree (e.g.
    Sentinel-2 L1C and L2A)."""
    for hint in hints:
        if hint:
            found = match_preset(names, get_sensor(hint))
            if found is not None:
                return found, get_sensor(hint).name
    for exact in (True, False):
        fits = [(name, wl) for name, s in SENSORS.items() if (wl := match_preset(names, s, exact)) is not None]
        if fits:
            if all(max(abs(a - b) for a, b in zip(wl, fits[0][1])) < 1e-6 for _, wl in fits):
                return fits[0][1], fits[0][0]
            return None
    return None


def file_band_wavelengths(src: Any, sensor_hint: str | None = None) -> list[float | None]:
    """Centre wavelength (µm) of every band of ``src`` from its metadata, None where unknown.

    Args:
        src: an open rasterio dataset or a path.
        sensor_hint: preset tried first when matching band descriptions (e.g. the model's sensor).
    """
    with _opened(src) as ds:
        envi = _envi_dataset_wavelengths(ds)
        values: list[float | None] = list(envi) if envi is not None else \
            [_band_tag_wavelength(ds, b) for b in ds.indexes]
        if any(v is None for v in values):
            found = _wavelengths_from_descriptions(_descriptions(ds), [_file_sensor_hint(ds), sensor_hint])
            if found is not None:
                values = [v if v is not None else f for v, f in zip(values, found[0])]
        return values


def _select_bands(ds: Any, bands: Sequence[int | str], sensor: Sensor | None) -> list[int]:
    """1-based indexes for ``bands`` (1-based ints, or names matched against the band
    descriptions, then against the sensor preset when the band counts agree)."""
    descr = _descriptions(ds)
    out: list[int] = []
    for b in bands:
        if isinstance(b, str) and b.strip().lstrip("-").isdigit():
            b = int(b)
        if isinstance(b, int) and not isinstance(b, bool):
            if not 1 <= b <= ds.count:
                raise CarlGeoError(f"band {b} does not exist: {ds.name} has bands 1..{ds.count} (1-based)")
            out.append(b)
            continue
        key = _norm_band(str(b))
        hits = [i + 1 for i, d in enumerate(descr) if d is not None and (d == b or _norm_band(d) == key)]
        if hits:
            out.append(hits[0])
        elif sensor is not None and sensor.num_bands == ds.count:
            out.append(sensor.band_index(str(b)) + 1)
        else:
            named = ", ".join(d for d in descr if d) or "none"
            raise CarlGeoError(f"no band named {b!r} in {ds.name} (band descriptions: {named}); "
                               "give 1-based band numbers instead")
    if not out:
        raise CarlGeoError(f"the band list is empty; give at least one band ({option('bands', '1,2,3', '[1, 2, 3]')})")
    if len(set(out)) != len(out):
        raise CarlGeoError(f"bands lists a band twice: {list(bands)}")
    return out


def _bundle_subset(ds: Any, fallback: Any) -> list[int] | None:
    """Indexes of the model's bands when the file describes its bands by name and has more of them."""
    names = getattr(fallback, "band_names", None)
    if not names or ds.count <= len(names):
        return None
    keys = {_norm_band(d): i + 1 for i, d in enumerate(_descriptions(ds)) if d}
    wanted = [keys.get(_norm_band(n)) for n in names]
    return None if any(w is None for w in wanted) else wanted  # type: ignore[return-value]


def _count_phrase(ds: Any, indexes: list[int], bands: Sequence[int | str] | None) -> str:
    if bands is None and len(indexes) == ds.count:
        return f"raster {ds.name} has {ds.count} bands"
    return f"{len(indexes)} bands of {ds.name} were selected (bands {indexes})"


#: Most bands a raster may give CARL (imaging spectrometers have up to ~450: AVIRIS-NG 425, EnMAP 224, PRISMA
#: 239); 1,000 bands took 2 s per window, 10,000 did not finish 4 pixels in 120 s.
MAX_INPUT_BANDS = 1024


def resolve_wavelengths(src: Any, *, wavelengths: Sequence[float] | None = None, sensor: str | None = None,
                        bands: Sequence[int | str] | None = None, fallback: Any = None) -> BandSelection:
    """Choose the bands to read and their wavelengths (µm); reads metadata only, never pixels.

    Order: explicit ``wavelengths`` > ``sensor`` preset > file metadata > ``fallback`` wavelengths
    (when the selected band count matches).

    Args:
        src: an open rasterio dataset or a path/URI rasterio opens.
        wavelengths: one µm value per selected band.
        sensor: a :mod:`carl_geo.sensors` preset name (``"sentinel2_l2a"``, ``"s2"``, ...).
        bands: 1-based band indexes or band names (``"B04"``); default: all bands, or the
            fallback model's bands when the file names its bands and has more of them.
        fallback: a :class:`~carl_geo.models.ModelBundle` (its ``wavelengths``, ``band_names``,
            ``sensor`` are used), a plain list of µm values, or None.

    Raises:
        ValueError: unknown band or preset, a count mismatch (e.g. "raster has 12 bands but 13
            wavelengths were given"), wavelengths in nm, or no wavelengths found.
        FileNotFoundError: ``src`` is a path that does not exist.
    """
    fb_wl = getattr(fallback, "wavelengths", None) if not isinstance(fallback, Sequence) else list(fallback)
    fb_sensor = getattr(fallback, "sensor", None)
    preset = get_sensor(sensor) if sensor else None
    with _opened(src) as ds:
        if bands is not None:
            indexes = _select_bands(ds, list(bands), preset)
        else:
            indexes = (_bundle_subset(ds, fallback) if wavelengths is None and preset is None else None) \
                or list(ds.indexes)
        if len(indexes) > MAX_INPUT_BANDS:
            raise InputError(f"{len(indexes)} bands selected from {getattr(ds, 'name', src)}; CARL reads at most "
                             f"{MAX_INPUT_BANDS} (its spectral attention grows with the square of the band count: "
                             f"{len(indexes)} bands would take hours per tile); pick bands with --bands / bands=[...] "
                             "or average neighbouring bands first")
        descr = _descriptions(ds)
        names = [descr[i - 1] for i in indexes]
        file_names = names if all(names) else None
        what = _count_phrase(ds, indexes, bands)

        if wavelengths is not None:
            wl = check_wavelengths(wavelengths)
            if len(wl) != len(indexes):
                raise WavelengthError(f"{what} but {len(wl)} wavelengths were given; "
                                      "give one wavelength (µm) per band")
            return BandSelection(indexes, wl, file_names, None, "explicit")

        if preset is not None:
            by_name = match_preset(names, preset)
            if by_name is not None:
                return BandSelection(indexes, by_name, file_names, preset.name, "sensor")
            if ds.count == preset.num_bands:
                return BandSelection(indexes, [preset.wavelengths[i - 1] for i in indexes],
                                     [preset.band_names[i - 1] for i in indexes], preset.name, "sensor")
            raise CarlGeoError(
                f"{what} but sensor preset {preset.name!r} has {preset.num_bands} bands "
                f"({', '.join(preset.band_names[:20])}{', ...' if preset.num_bands > 20 else ''}) and the band "
                f"descriptions do not name them; pick the bands with {option('bands', 'B,B,...', '[...]')} "
                f"or give {option('wavelengths', 'UM,UM,...', '[...]')}")

        meta = file_band_wavelengths(ds, fb_sensor)
        picked = [meta[i - 1] for i in indexes]
        if all(v is not None for v in picked):
            wl = check_wavelengths(picked)  # type: ignore[arg-type]
            hint = _file_sensor_hint(ds)
            return BandSelection(indexes, wl, file_names, hint, "metadata")

        if fb_wl is not None and len(fb_wl) == len(indexes):
            fb_names = getattr(fallback, "band_names", None)
            names_out = file_names or (list(fb_names) if fb_names else None)
            return BandSelection(indexes, check_wavelengths(fb_wl), names_out, fb_sensor, "model")

        hint = ""
        if fb_wl is not None:
            hint = f"; the model was trained with {len(fb_wl)} bands, so its wavelengths do not apply"
        raise WavelengthError(
            f"{what} and no wavelengths for them: give {option('wavelengths', 'UM,UM,...', '[...]')} (µm, one per "
            f"band) or a sensor preset ({option('sensor', 'NAME', repr('NAME'))}; "
            f"known: {', '.join(sorted(SENSORS))}), "
            f"or write CENTRAL_WAVELENGTH_UM band metadata (GDAL IMAGERY domain) into the file{hint}")


def resolve_band_selection(src: Any, *, wavelengths: Sequence[float] | None = None, sensor: str | None = None,
                           bands: Sequence[int | str] | None = None, fallback: Any = None
                           ) -> tuple[list[int], list[float], list[str] | None]:
    """:func:`resolve_wavelengths` as a tuple ``(band_indexes_1based, wavelengths_um, band_names)``."""
    sel = resolve_wavelengths(src, wavelengths=wavelengths, sensor=sensor, bands=bands, fallback=fallback)
    return sel.band_indexes, sel.wavelengths, sel.band_names
