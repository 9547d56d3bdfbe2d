"""Optional vector output of a class map: one dissolved (multi)polygon per class with its area.

Polygons come from the child process (:mod:`carl_geo.worker` job ``polygons``: ``rasterio.features.shapes``,
4-connected regions of equal class, nodata left out, all regions of a class one MultiPolygon) as a GeoPackage,
which QGIS's own OGR reads here. Area in m²: planar in a projected CRS (= pixel count x pixel area), on the
ellipsoid in a geographic CRS.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from qgis.core import (
    QgsDistanceArea,
    QgsFeature,
    QgsFeatureSink,
    QgsFields,
    QgsProcessingAlgorithm,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsProcessingParameterFeatureSink,
    QgsProcessingUtils,
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


#: destinations that are not a file written whole (a layer added to a database, a memory layer)
NOT_A_FILE = ("memory:", "ogr:", "postgres:", "postgis:", "spatialite:", "TEMPORARY_OUTPUT")


def polygons_file(alg: QgsProcessingAlgorithm, parameters: dict[str, Any], context: QgsProcessingContext) -> str | None:
    """The local file the class polygons will be written to (QGIS replaces the whole file), or None when they are
    not asked for or go to a memory layer or a database table; checked against the run's inputs before it starts."""
    if not wants_polygons(parameters):
        return None
    dest = alg.parameterAsOutputLayer(parameters, OUTPUT_POLYGONS, context) or ""
    if not dest or dest.startswith(NOT_A_FILE):
        return None
    return dest.split("|", 1)[0]


def write_class_polygons(alg: QgsProcessingAlgorithm, parameters: dict[str, Any], context: QgsProcessingContext,
                         feedback: QgsProcessingFeedback, class_raster: str, class_names: Sequence[str],
                         class_values: Sequence[int] | None = None) -> str | None:
    """Fill the :data:`OUTPUT_POLYGONS` sink from ``class_raster`` (pixel values: ``class_values``, or 0..K-1);
    returns its destination id (None when the output was not asked for)."""
    if not wants_polygons(parameters):
        return None
    from carl_qgis.algorithms.base import run_child

    folder = tempfile.mkdtemp(prefix="carl_polygons_", dir=QgsProcessingUtils.tempFolder())
    try:
        result = run_child("polygons", {"class_raster": class_raster, "out": str(Path(folder) / "classes.gpkg")},
                           feedback, start=100.0, span=0.0, cancelled="Cancelled while making the class polygons.")
        layer = QgsVectorLayer(f"{result['path']}|layername=classes", "classes", "ogr")
        if not layer.isValid():
            raise QgsProcessingException(f"Could not read the class polygons written to {result['path']}.")
        crs = layer.crs()
        sink, dest = alg.parameterAsSink(parameters, OUTPUT_POLYGONS, context, polygon_fields(), WKB_MULTIPOLYGON, crs)
        if sink is None:
            raise QgsProcessingException("Could not create the class polygons output.")
        area = QgsDistanceArea()
        area.setSourceCrs(crs, context.transformContext())
        area.setEllipsoid(crs.ellipsoidAcronym() or "EPSG:7030" if crs.isGeographic() else "NONE")
        index = {int(v): i for i, v in enumerate(class_values)} if class_values else {}
        for source in layer.getFeatures():
            if feedback.isCanceled():
                raise QgsProcessingException("Cancelled while writing the class polygons.")
            value = int(source["class_id"])
            i = index.get(value, value)
            name = class_names[i] if 0 <= i < len(class_names) else str(value)
            geom = source.geometry()
            feature = QgsFeature(polygon_fields())
            feature.setGeometry(geom)
            m2 = area.convertAreaMeasurement(area.measureArea(geom), AREA_SQUARE_METERS)
            feature.setAttributes([value, name, float(m2), int(source["pixels"])])
            if not sink.addFeature(feature, QgsFeatureSink.Flag.FastInsert):
                raise QgsProcessingException(f"Could not write the polygon of class {name!r}.")
            feedback.pushInfo(f"  {name}: {m2 / 1e4:.2f} ha in {geom.constGet().numGeometries()} polygon(s)")
        del layer
        return dest
    finally:
        shutil.rmtree(folder, ignore_errors=True)
