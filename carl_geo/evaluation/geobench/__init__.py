"""GEO-Bench evaluation of CARL checkpoints.

* reading the published on-disk format without the ``geobench`` package:
  :func:`find_tasks`, :func:`load_task` -> :class:`GeoBenchTask`, :func:`read_sample`,
  :class:`GeoBenchDataset` (``image`` (C, H, W), ``wavelengths`` (C,) µm, ``label``/``mask``),
  :class:`GeoBenchDataModule`;
* the protocol (upstream's linear probe; fine-tuning, training from scratch and k-NN as
  options): :class:`GeoBenchClassificationTask`, :class:`GeoBenchSegmentationTask`;
* the runner: :class:`GeoBenchSettings` -> :func:`run_geobench` -> :class:`GeoBenchReport`
  (resumable; CSV, JSON, markdown and PNG results beside the published CARL numbers
  :data:`PAPER_RESULTS`); command line ``carl-geo geobench`` (:mod:`.cli`);
* :func:`write_synthetic_benchmark`: a tiny benchmark in the same format for smoke tests.
"""

from carl_geo.evaluation.geobench.datamodule import GeoBenchDataModule
from carl_geo.evaluation.geobench.dataset import GeoBenchDataset
from carl_geo.evaluation.geobench.reader import (
    BandSpec,
    GeoBenchFormatError,
    GeoBenchTask,
    RawSample,
    find_tasks,
    load_task,
    read_sample,
)
from carl_geo.evaluation.geobench.results import PAPER_RESULTS, PRIMARY_METRIC
from carl_geo.evaluation.geobench.runner import GeoBenchReport, GeoBenchSettings, run_geobench
from carl_geo.evaluation.geobench.synthetic import write_synthetic_benchmark
from carl_geo.evaluation.geobench.tasks import GeoBenchClassificationTask, GeoBenchSegmentationTask

__all__ = [
    "BandSpec", "GeoBenchClassificationTask", "GeoBenchDataModule", "GeoBenchDataset", "GeoBenchFormatError",
    "GeoBenchReport", "GeoBenchSegmentationTask", "GeoBenchSettings", "GeoBenchTask", "PAPER_RESULTS",
    "PRIMARY_METRIC", "RawSample", "find_tasks", "load_task", "read_sample", "run_geobench",
    "write_synthetic_benchmark",
]
