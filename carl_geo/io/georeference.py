"""How a raster is placed on the map: a CRS + transform, ground control points, or RPCs.

A raw satellite product or a scanned map has no map grid (identity transform, no CRS): it is placed by ground
control points (GCPs, with their CRS) or by rational polynomial coefficients (RPCs, in EPSG:4326). The predictor
copies that placement into its outputs, the class polygons are placed through it, and polygon training refuses it
with the way out (warp first). This module is the one place that reads it from an open rasterio dataset.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

RPC_CRS = "EPSG:4326"  # RPCs map to longitude / latitude (GDAL's RPC transformer)
#: What :func:`placement_without_grid` returns for a raster placed by ground control points / by RPCs.
BY_GCPS, BY_RPCS = "ground control points", "rational polynomial coefficients"


def ground_control_points(ds: Any) -> tuple[Sequence[Any], Any] | None:
    """``(points, their CRS)`` of an open rasterio dataset placed by GCPs, or None when it has none."""
    gcps = ds.gcps
    return gcps if gcps and len(gcps[0]) else None


def georeference(ds: Any) -> dict[str, Any]:
    """The grid of an open rasterio dataset as :class:`~carl_geo.inference.writer.GeoTiffWriter` keywords:
    ``width, height, crs, transform``, and ``gcps`` / ``rpcs`` (None when absent) for a raster placed by ground
    control points or rational polynomial coefficients."""
    return dict(width=ds.width, height=ds.height, crs=ds.crs, transform=ds.transform,
                gcps=ground_control_points(ds), rpcs=ds.rpcs)


def placement_without_grid(georef: Mapping[str, Any]) -> str:
    """:data:`BY_GCPS` or :data:`BY_RPCS` when :func:`georeference`'s result has no CRS and is placed by ground
    control points or rational polynomial coefficients (no map grid), else ``""``."""
    if georef.get("crs"):
        return ""
    if georef.get("gcps"):
        return BY_GCPS
    return BY_RPCS if georef.get("rpcs") is not None else ""


def describe_georeference(georef: Mapping[str, Any]) -> str:
    """:func:`georeference`'s result in words: ``"EPSG:32633"``, ``"4 ground control points (EPSG:32633)"``,
    ``"rational polynomial coefficients"`` or ``""`` (none)."""
    if georef.get("crs"):
        return georef["crs"].to_string()
    how = placement_without_grid(georef)
    if how != BY_GCPS:
        return how
    points, crs = georef["gcps"]
    return f"{len(points)} {how}" + (f" ({crs.to_string()})" if crs else "")


#: Metadata items (any GDAL domain prefix, e.g. netCDF's ``var#crs``) that name a CRS GDAL does not take as the
#: raster's own: the ``crs`` attribute of older xarray / rioxarray files, CF's ``spatial_ref`` / ``crs_wkt``.
CRS_TAG_NAMES = ("crs", "spatial_ref", "crs_wkt", "proj4", "proj4text")


def crs_named_in_metadata(ds: Any) -> str | None:
    """A CRS (``"EPSG:32719"`` or its WKT / PROJ text) that an open rasterio dataset without a CRS names in its
    metadata (:data:`CRS_TAG_NAMES`), for the error or warning that asks the user to assign it; None when it names
    none (or the raster has a CRS). Only named, never applied: the metadata may be stale."""
    from rasterio.crs import CRS

    if ds.crs:
        return None
    for key, value in ds.tags().items():
        if key.rsplit("#", 1)[-1].lower() not in CRS_TAG_NAMES or not str(value).strip():
            continue
        try:
            crs = CRS.from_user_input(str(value).strip())
        except Exception:  # noqa: BLE001 - text that is not a CRS: not a CRS
            continue
        epsg = crs.to_epsg()
        return f"EPSG:{epsg}" if epsg else crs.to_string()
    return None


def without_crs_advice(ds: Any) -> str:
    """What to tell the user about a raster without a CRS (and without GCPs / RPCs): the CRS its metadata names, if
    any, and how to assign one: ``"; its metadata names EPSG:32719, ...: assign one (gdal_translate -a_srs
    EPSG:32719 ...)"`` (``": assign one (...)"`` when it names none)."""
    named = crs_named_in_metadata(ds)
    srs = named if named and named.startswith("EPSG:") else "EPSG:xxxx"
    where = (f"; its metadata names {named}, which GDAL does not read as the raster's CRS" if named else "")
    return (f"{where}: assign one (gdal_translate -a_srs {srs} in out.tif, gdal_edit.py -a_srs {srs} for a GeoTIFF "
            "or VRT, or QGIS's Assign projection)")


def pixel_to_map(ds: Any) -> tuple[Callable[..., tuple[Any, Any]], Any] | None:
    """For a raster placed by ground control points or RPCs (no CRS): ``(place, crs)``, where ``place(cols, rows)``
    maps pixel-corner coordinates to map coordinates in ``crs`` as GDAL's GCP / RPC transformers do (QGIS draws
    such a raster the same way); None for a raster with a map grid or without any placement."""
    from rasterio.transform import GCPTransformer, RPCTransformer

    georef = georeference(ds)
    how = placement_without_grid(georef)
    if how == BY_GCPS:
        transformer, crs = GCPTransformer(georef["gcps"][0]), georef["gcps"][1]
    elif how:
        transformer, crs = RPCTransformer(georef["rpcs"]), RPC_CRS
    else:
        return None

    def place(cols: Any, rows: Any, _z: Any = None) -> tuple[Any, Any]:
        return transformer.xy(rows, cols, offset="ul")

    return place, crs
