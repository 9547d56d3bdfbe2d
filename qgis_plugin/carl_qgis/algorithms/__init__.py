"""The CARL Processing algorithms (carl_geo is imported only when one runs)."""

from carl_qgis.algorithms.download_weights import DownloadWeightsAlgorithm
from carl_qgis.algorithms.extract_features import ExtractFeaturesAlgorithm
from carl_qgis.algorithms.install_dependencies import InstallDependenciesAlgorithm
from carl_qgis.algorithms.segment_raster import SegmentRasterAlgorithm
from carl_qgis.algorithms.train_from_polygons import TrainFromPolygonsAlgorithm

ALGORITHMS = (SegmentRasterAlgorithm, ExtractFeaturesAlgorithm, TrainFromPolygonsAlgorithm,
              InstallDependenciesAlgorithm, DownloadWeightsAlgorithm)

__all__ = ["ALGORITHMS", "DownloadWeightsAlgorithm", "ExtractFeaturesAlgorithm", "InstallDependenciesAlgorithm",
           "SegmentRasterAlgorithm", "TrainFromPolygonsAlgorithm"]
