"""Training CARL classifiers from an analyst's polygons: a plain torch loop (the Lightning tasks are in
:mod:`carl_geo.trainers`). Called ``carl_geo.training`` before issue #19; that name still imports.

* :func:`train_from_polygons` -> :class:`TrainingResult`: polygons (any OGR vector file, any CRS)
  on one raster -> a segmentation model bundle plus a validation report on held-out polygons.
* :mod:`carl_geo.polygon_training.metrics`: confusion matrix, overall accuracy, per-class IoU, mIoU.
* ``carl-geo train`` (:mod:`carl_geo.polygon_training.cli`).

Names load on first use (the command line imports this package without torch).
"""

from carl_geo._lazy import lazy_exports

_EXPORTS = {
    **{n: "carl_geo.polygon_training.metrics" for n in ("confusion_matrix", "mean_iou", "overall_accuracy", "per_class_iou",
                                                 "segmentation_report")},
    **{n: "carl_geo.polygon_training.polygons" for n in ("TrainingCancelled", "TrainingResult", "train_from_polygons")},
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())

__all__ = sorted(_EXPORTS)
