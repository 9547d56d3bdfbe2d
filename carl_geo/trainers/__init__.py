"""Lightning tasks (torchgeo style) that train CARL: segmentation and scene classification."""

from carl_geo.trainers.classification import CARLClassificationTask
from carl_geo.trainers.segmentation import CARLSegmentationTask

__all__ = ["CARLClassificationTask", "CARLSegmentationTask"]
