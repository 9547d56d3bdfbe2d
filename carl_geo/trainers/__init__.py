"""Every Lightning task (LightningModule) of carl_geo, torchgeo style.

* :class:`CARLSegmentationTask`, :class:`CARLClassificationTask`: fine-tuning / linear probing /
  training from scratch on labelled data (:mod:`.segmentation`, :mod:`.classification`);
* :class:`CARLPretrainTask`: CARL-SSL pre-training (:mod:`.carl_ssl`; the SSL parts it is built
  from live in :mod:`carl_geo.ssl`);
* :class:`GeoBenchClassificationTask`, :class:`GeoBenchSegmentationTask`: the GEO-Bench protocol
  (:mod:`.geobench`; the runner lives in :mod:`carl_geo.evaluation.geobench`).

Names load on first use (``carl_geo.trainers`` does not import Lightning until a task is used).
"""

from carl_geo._lazy import lazy_exports

_EXPORTS = {
    "CARLClassificationTask": "carl_geo.trainers.classification",
    "CARLSegmentationTask": "carl_geo.trainers.segmentation",
    "CARLPretrainTask": "carl_geo.trainers.carl_ssl",
    "GeoBenchClassificationTask": "carl_geo.trainers.geobench",
    "GeoBenchSegmentationTask": "carl_geo.trainers.geobench",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())

__all__ = sorted(_EXPORTS)
