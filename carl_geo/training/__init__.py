"""Training CARL classifiers from an analyst's labels.

* :func:`train_from_polygons` -> :class:`TrainingResult`: polygons (any OGR vector file, any CRS)
  on one raster -> a segmentation model bundle plus a validation report on held-out polygons.
* :mod:`carl_geo.training.metrics`: confusion matrix, overall accuracy, per-class IoU, mIoU.
* ``carl-geo train`` (:mod:`carl_geo.training.cli`).
"""

from carl_geo.training.metrics import confusion_matrix, mean_iou, overall_accuracy, per_class_iou, segmentation_report
from carl_geo.training.polygons import TrainingCancelled, TrainingResult, train_from_polygons

__all__ = [
    "TrainingCancelled", "TrainingResult", "confusion_matrix", "mean_iou", "overall_accuracy", "per_class_iou",
    "segmentation_report", "train_from_polygons",
]
