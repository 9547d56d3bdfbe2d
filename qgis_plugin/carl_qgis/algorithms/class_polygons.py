"""Optional vector output of a class map: one dissolved (multi)polygon per class with its area.

Polygons come from ``rasterio.features.shapes`` (4-connected regions of equal class, nodata left
out); all regions of a class form one MultiPolygon (regions of one class never overlap, so no
union is needed). Area in m²: planar in a projected CRS (= pixel count x pixel area), on the
ellipsoid in a geographic CRS.
"""

from __future__ import annotations

import importlib
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsDistanceArea,
    QgsFeature,
    QgsFeatureSink,
    QgsFields,
    QgsGeometry,
    QgsProcessingAlgorithm,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsProcessingParameterFeatureSink,
    QgsVectorLayer,
)

from carl_qgis.compat import AREA_SQUARE_METERS, SOURCE_POLYGON, WKB_MULTIPOLYGON

OUTPUT_POLYGONS = "OUTPUT_POLYGONS"
FIELDS_URI = "MultiPolygon?field=class_id:integer&field=class_name:string(254)&field=area_m2:double&field=pixels:long"


def polygons_parameter() -> QgsProcessingParameterFeatureSink:
    """The optional "Class polygons" output (skipped unless the user asks for it)."""
    return QgsProcessingParameterFeatureSink(
        OUTPUT_POLYGONS, "Class polygons (one per class, dissolved, with area in m²; optional)",
        type=SOURCE_POLYGON, optional=True, createByDefault=False)


def polygon_fields() -> QgsFields:
    """``class_id`` (int), ``class_name`` (text), ``area_m2`` (double), ``pixels`` (int64)."""
    return QgsVectorLayer(FIELDS_URI, "fields", "memory").fields()


def wants_polygons(parameters: dict[str, Any]) -> bool:
    return parameters.get(OUTPUT_POLYGONS) not in (None, "", False)


def class_regions(path: str) -> tuple[dict[int, list[Any]], dict[int, int], str]:
    """``({class: [shapely polygons]}, {class: pixel count}, crs wkt)`` of a one-band class raster."""
    np = importlib.import_module("numpy")
    rasterio = importlib.import_module("rasterio")
    features = importlib.import_module("rasterio.features")
    geometry = importlib.import_module("shapely.geometry")
    with rasterio.open(path) as ds:
        data = ds.read(1)
        valid = data != ds.nodata if ds.nodata is not None else np.ones(data.shape, bool)
        transform, crs = ds.transform, ds.crs.to_wkt() if ds.crs else ""
    regions: dict[int, list[Any]] = defaultdict(list)
    for geom, value in features.shapes(data, mask=valid, transform=transform, connectivity=4):
        regions[int(value)].append(geometry.shape(geom))
    values, counts = np.unique(data[valid], return_counts=True)
    return dict(regions), {int(v): int(c) for v, c in zip(values, counts)}, crs


def write_class_polygons(alg: QgsProcessingAlgorithm, parameters: dict[str, Any], context: QgsProcessingContext,
                         feedback: QgsProcessingFeedback, class_raster: str,
                         class_names: Sequence[str]) -> str | None:
    """Fill the :data:`OUTPUT_POLYGONS` sink from ``class_raster``; returns its destination id (None
    when the output was not asked for)."""
    if not wants_polygons(parameters):
        return None
    shapely = importlib.import_module("shapely")
    multi = importlib.import_module("shapely.geometry").MultiPolygon
    regions, counts, wkt = class_regions(class_raster)
    crs = QgsCoordinateReferenceSystem.fromWkt(wkt)
    sink, dest = alg.parameterAsSink(parameters, OUTPUT_POLYGONS, context, polygon_fields(), WKB_MULTIPOLYGON, crs)
    if sink is None:
        raise QgsProcessingException("Could not create the class polygons output.")
    area = QgsDistanceArea()
    area.setSourceCrs(crs, context.transformContext())
    area.setEllipsoid(crs.ellipsoidAcronym() or "EPSG:7030" if crs.isGeographic() else "NONE")
    for i, value in enumerate(sorted(regions)):
        if feedback.isCanceled():
            raise QgsProcessingException("Cancelled while writing the class polygons.")
        parts = [p for poly in regions[value] for p in (poly.geoms if hasattr(poly, "geoms") else [poly])]
        geom = QgsGeometry()
        geom.fromWkb(shapely.to_wkb(multi(parts)))
        feature = QgsFeature(polygon_fields())
        feature.setGeometry(geom)
        name = class_names[value] if 0 <= value < len(class_names) else str(value)
        m2 = area.convertAreaMeasurement(area.measureArea(geom), AREA_SQUARE_METERS)
        feature.setAttributes([value, name, float(m2), counts.get(value, 0)])
        if not sink.addFeature(feature, QgsFeatureSink.Flag.FastInsert):
            raise QgsProcessingException(f"Could not write the polygon of class {name!r}.")
        feedback.pushInfo(f"  {name}: {m2 / 1e4:.2f} ha in {len(parts)} polygon(s)")
    return dest
