"""GEO-Bench evaluation of CARL checkpoints.

* reading the published on-disk format without the ``geobench`` package (:mod:`carl_geo.datasets.geobench`,
  re-exported here): :func:`find_tasks`, :func:`load_task` -> :class:`GeoBenchTask`, :func:`read_sample`,
  :class:`GeoBenchDataset` (``image`` (C, H, W), ``wavelengths`` (C,) µm, ``label``/``mask``),
  :class:`GeoBenchDataModule`;
* the protocol (upstream's linear probe; fine-tuning, training from scratch and k-NN as
  options): :class:`GeoBenchClassificationTask`, :class:`GeoBenchSegmentationTask`;
* the runner: :class:`GeoBenchSettings` -> :func:`run_geobench` -> :class:`GeoBenchReport`
  (resumable; CSV, JSON, markdown and PNG results beside the published CARL numbers
  :data:`PAPER_RESULTS`); command line ``carl-geo geobench`` (:mod:`.cli`);
* :func:`write_synthetic_benchmark`: a tiny benchmark in the same format for smoke tests
  (:mod:`carl_geo.datasets.geobench.synthetic`).

Names load on first use (the command line imports this package without torch).
"""

from carl_geo._lazy import lazy_exports

_EXPORTS = {
    "GeoBenchDataModule": "carl_geo.datamodules.geobench",
    "GeoBenchDataset": "carl_geo.datasets.geobench.dataset",
    "BandSpec": "carl_geo.datasets.geobench.reader",
    "GeoBenchFormatError": "carl_geo.datasets.geobench.reader",
    "GeoBenchTask": "carl_geo.datasets.geobench.reader",
    "RawSample": "carl_geo.datasets.geobench.reader",
    "find_tasks": "carl_geo.datasets.geobench.reader",
    "load_task": "carl_geo.datasets.geobench.reader",
    "read_sample": "carl_geo.datasets.geobench.reader",
    "PAPER_RESULTS": "carl_geo.evaluation.geobench.results",
    "PRIMARY_METRIC": "carl_geo.evaluation.geobench.results",
    "GeoBenchReport": "carl_geo.evaluation.geobench.runner",
    "GeoBenchSettings": "carl_geo.evaluation.geobench.settings",
    "run_geobench": "carl_geo.evaluation.geobench.runner",
    "write_synthetic_benchmark": "carl_geo.datasets.geobench.synthetic",
    "GeoBenchClassificationTask": "carl_geo.trainers.geobench",
    "GeoBenchSegmentationTask": "carl_geo.trainers.geobench",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())

__all__ = sorted(_EXPORTS)
