"""Choices of the GEO-Bench runner, in a module without heavy imports (the CLI builds its
parser from them without loading torch). The dataset's choices (``NORMALIZATIONS``, ``BAND_ORDERS``)
moved to :mod:`carl_geo.datasets.geobench.options` (issue #29; the old names still import, with a
:class:`DeprecationWarning`)."""

from typing import Any, Literal, get_args

from carl_geo.models.names import TaskMode

#: Evaluation protocols: the Lightning tasks' modes (:data:`carl_geo.models.names.TaskMode`) and k-NN.
Mode = Literal[TaskMode, "knn"]
MODES: tuple[str, ...] = get_args(Mode)
#: ``--checkpoint random``: the random-init floor.
RANDOM = "random"
#: ``--spatial-init`` / ``--spectral-init`` default: upstream's initialisation for the config.
AUTO = "auto"

_MOVED = {"NORMALIZATIONS": "carl_geo.datasets.geobench.options", "BAND_ORDERS": "carl_geo.datasets.geobench.options"}


def __getattr__(name: str) -> Any:
    if name not in _MOVED:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib
    import warnings

    warnings.warn(f"{__name__}.{name} moved to {_MOVED[name]}.{name} and will be removed in carl_geo 0.3; import it "
                  "from there", DeprecationWarning, stacklevel=2)
    return getattr(importlib.import_module(_MOVED[name]), name)
