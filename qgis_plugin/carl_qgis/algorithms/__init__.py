"""The CARL Processing algorithms (carl_geo is imported only when one runs)."""

from carl_qgis.algorithms.extract_features import ExtractFeaturesAlgorithm
from carl_qgis.algorithms.segment_raster import SegmentRasterAlgorithm
from carl_qgis.algorithms.train_from_polygons import TrainFromPolygonsAlgorithm

ALGORITHMS = (SegmentRasterAlgorithm, ExtractFeaturesAlgorithm, TrainFromPolygonsAlgorithm)

__all__ = ["ALGORITHMS", "ExtractFeaturesAlgorithm", "SegmentRasterAlgorithm", "TrainFromPolygonsAlgorithm"]
