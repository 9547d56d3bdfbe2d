"""GEO-Bench's data, read without the ``geobench`` package (moved here from
``carl_geo.evaluation.geobench`` in issue #29; the runner, result tables and command line stay there).

* :mod:`.reader`: the published on-disk format: :func:`find_tasks`, :func:`load_task` -> :class:`GeoBenchTask`,
  :func:`read_sample`; :mod:`.pickles`: its pickled metadata, read without running code;
* :class:`GeoBenchDataset` (:mod:`.dataset`): ``image`` (C, H, W), ``wavelengths`` (C,) µm, ``label``/``mask``;
  its choices in :mod:`.options` (no heavy imports);
* :mod:`.augment`: upstream's input pipeline (resize, flips, random resized crops);
* :func:`write_synthetic_benchmark` (:mod:`.synthetic`): a tiny benchmark in the same format for smoke tests.

Names load on first use.
"""

from carl_geo._lazy import lazy_exports

_EXPORTS = {
    "GeoBenchDataset": "carl_geo.datasets.geobench.dataset",
    **{n: "carl_geo.datasets.geobench.reader" for n in ("BandSpec", "GeoBenchFormatError", "GeoBenchTask", "RawSample",
                                                        "find_tasks", "load_task", "read_sample")},
    **{n: "carl_geo.datasets.geobench.synthetic" for n in ("write_synthetic_benchmark", "write_synthetic_task")},
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())

__all__ = sorted(_EXPORTS)
