"""GEO-Bench's pickled metadata, read and written without the ``geobench`` package.

GEO-Bench stores band metadata (``band_info`` with each band's wavelength in µm), labels and the
task specification as Python pickles that name ``geobench`` classes (``geobench.dataset.Sentinel2``,
``geobench.label.Classification``, ``geobench.task.TaskSpecifications``; older files use the module
names ``geobench.io.*`` and ``ccb.io.*``). Unpickling normally runs arbitrary code; this module
instead rebuilds every ``geobench`` object as an inert :class:`GeoBenchRecord` (a class of the same
name whose instances only hold attributes) and refuses every other global except a short allowlist:
``datetime`` types, ``collections.OrderedDict``, numpy arrays/scalars of non-object dtype, and
``affine.Affine`` / ``rasterio.crs.CRS`` (also rebuilt as inert records). Nothing is imported or
executed while reading a file.

:func:`dump_geobench_pickle` writes the same layout (used by :mod:`.synthetic` to produce files
that the ``geobench`` package itself reads).
"""

from __future__ import annotations

import ast
import io
import pickle
import re
from typing import Any

import numpy as np

from carl_geo.errors import CarlGeoError

#: Module names under which GEO-Bench classes have been pickled (current and historical).
GEOBENCH_MODULES = frozenset({
    "geobench", "geobench.dataset", "geobench.label", "geobench.task",
    "geobench.io", "geobench.io.dataset", "geobench.io.label", "geobench.io.task",
    "ccb", "ccb.io", "ccb.io.dataset", "ccb.io.label", "ccb.io.task",
})
#: Third-party classes found in GEO-Bench metadata; rebuilt as inert records, never imported.
FOREIGN_RECORDS = frozenset({("affine", "Affine"), ("rasterio.crs", "CRS")})
_SAFE_GLOBALS = frozenset({
    ("datetime", "date"), ("datetime", "datetime"), ("datetime", "time"), ("datetime", "timedelta"),
    ("datetime", "timezone"), ("collections", "OrderedDict"),
})
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class UnsafePickleError(pickle.UnpicklingError):
    """A pickle that refers to something outside the GEO-Bench format (possibly malicious)."""


class GeoBenchRecord:
    """An inert stand-in for a pickled GEO-Bench object: its pickled attributes, nothing else.

    ``type(rec).__name__`` is the original class name (e.g. ``"Sentinel2"``); ``rec.args`` holds
    constructor arguments of tuple-like classes (``affine.Affine``: the 9 coefficients) and
    ``rec.state`` a non-dict pickled state (``rasterio.crs.CRS``: its WKT string).
    """

    _geobench_ref: tuple[str, str] = ("geobench.dataset", "GeoBenchRecord")

    def __new__(cls, *args: Any, **kwargs: Any) -> "GeoBenchRecord":
        obj = object.__new__(cls)
        if args:
            obj.__dict__["args"] = args
        return obj

    def __init__(self, **attrs: Any) -> None:
        self.__dict__.update(attrs)

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, tuple) and len(state) == 2 and (state[0] is None or isinstance(state[0], dict)):
            state = {**(state[0] or {}), **(state[1] or {})}  # (dict, slots) state
        if isinstance(state, dict):
            self.__dict__.update(state)
        else:
            self.__dict__["state"] = state

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "args"}

    def __reduce_ex__(self, protocol: Any) -> tuple:
        return (_new_record, (type(self), *self.__dict__.get("args", ())), self.__getstate__() or None)

    def __repr__(self) -> str:
        attrs = ", ".join(f"{k}={v!r}" for k, v in self.__dict__.items() if not isinstance(v, np.ndarray))
        return f"{type(self).__name__}({attrs})"

    @property
    def kind(self) -> str:
        """The original class name, e.g. ``"Sentinel2"`` or ``"MultiLabelClassification"``."""
        return type(self).__name__


def _new_record(cls: type, *args: Any) -> GeoBenchRecord:
    return cls.__new__(cls, *args)


_RECORD_CLASSES: dict[tuple[str, str], type[GeoBenchRecord]] = {}


def record_class(module: str, name: str) -> type[GeoBenchRecord]:
    """The record class that stands for ``module.name`` (one class per pair, created on demand)."""
    key = (module, name)
    if key not in _RECORD_CLASSES:
        if not _IDENTIFIER.match(name):
            raise UnsafePickleError(f"invalid class name {name!r} in module {module!r}")
        _RECORD_CLASSES[key] = type(name, (GeoBenchRecord,), {"_geobench_ref": key, "__module__": __name__})
    return _RECORD_CLASSES[key]


def make_record(module: str, cls_name: str, /, **attrs: Any) -> GeoBenchRecord:
    """A record that pickles as an instance of ``module.name`` with the given attributes
    (e.g. ``make_record("geobench.dataset", "Sentinel2", name="04 - Red", wavelength=0.665, ...)``)."""
    return record_class(module, cls_name)(**attrs)


# --- numpy reconstructors, refusing object dtypes (which would unpickle arbitrary objects) ---

def _np_core(sub: str) -> Any:
    try:
        return __import__(f"numpy._core.{sub}", fromlist=["_"])
    except ImportError:  # numpy < 2
        return __import__(f"numpy.core.{sub}", fromlist=["_"])


def _check_dtype(dtype: Any) -> np.dtype:
    dt = np.dtype(dtype)
    if dt.hasobject:
        raise UnsafePickleError("object dtypes are not allowed in GEO-Bench metadata")
    return dt


def _safe_dtype(*args: Any, **kwargs: Any) -> np.dtype:
    return _check_dtype(np.dtype(*args, **kwargs))


def _safe_reconstruct(subtype: Any, shape: Any, dtype: Any) -> np.ndarray:
    if subtype is not np.ndarray:
        raise UnsafePickleError(f"ndarray subclass {subtype!r} is not allowed")
    return _np_core("multiarray")._reconstruct(subtype, shape, dtype)


def _safe_scalar(dtype: Any, *args: Any) -> Any:
    _check_dtype(dtype)
    return _np_core("multiarray").scalar(dtype, *args)


def _safe_frombuffer(buf: Any, dtype: Any, shape: Any, order: Any) -> np.ndarray:
    _check_dtype(dtype)
    return _np_core("numeric")._frombuffer(buf, dtype, shape, order)


_NUMPY: dict[tuple[str, str], Any] = {("numpy", "dtype"): _safe_dtype, ("numpy", "ndarray"): np.ndarray}
for _m in ("numpy.core.multiarray", "numpy._core.multiarray"):
    _NUMPY[(_m, "_reconstruct")] = _safe_reconstruct
    _NUMPY[(_m, "scalar")] = _safe_scalar
for _m in ("numpy.core.numeric", "numpy._core.numeric"):
    _NUMPY[(_m, "_frombuffer")] = _safe_frombuffer


class _RecordUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        key = (module, name)
        if key in _NUMPY:
            return _NUMPY[key]
        if key in _SAFE_GLOBALS:
            return super().find_class(module, name)
        if module in GEOBENCH_MODULES or key in FOREIGN_RECORDS:
            return record_class(module, name)
        raise UnsafePickleError(
            f"refusing to unpickle {module}.{name}: it is not part of the GEO-Bench format "
            "(the file was not written by geobench and may be malicious)"
        )


def load_geobench_pickle(data: bytes | str) -> Any:
    """Unpickle GEO-Bench metadata into plain Python, numpy and :class:`GeoBenchRecord` objects.

    Args:
        data: the pickle bytes, or the ``str(bytes)`` text GEO-Bench stores in HDF5 attributes
            (``"b'\\x80\\x04...'"``; decoded with :func:`ast.literal_eval`, which runs no code).

    Raises:
        UnsafePickleError: the pickle names a class outside the GEO-Bench format.
        pickle.UnpicklingError, ValueError: corrupt data.
    """
    if isinstance(data, str):
        data = ast.literal_eval(data)
        if not isinstance(data, bytes):
            raise CarlGeoError("metadata attribute does not hold a bytes literal")
    return _RecordUnpickler(io.BytesIO(data)).load()


class _RecordPickler(pickle._Pickler):  # the pure-Python pickler lets us name foreign globals
    """Writes :class:`GeoBenchRecord` classes under their GEO-Bench names."""

    def save_global(self, obj: Any, name: str | None = None) -> None:
        ref = getattr(obj, "_geobench_ref", None) if isinstance(obj, type) else None
        if ref is None:
            return super().save_global(obj, name)
        module, qualname = ref
        if self.proto >= 4:
            self.save(module)
            self.save(qualname)
            self.write(pickle.STACK_GLOBAL)
        else:
            self.write(pickle.GLOBAL + f"{module}\n{qualname}\n".encode())
        self.memoize(obj)

    def save_reduce(self, func: Any, args: Any, state: Any = None, *rest: Any, obj: Any = None) -> None:
        if func is _new_record:  # emit NEWOBJ: cls.__new__(cls, *args), then BUILD with state
            cls, *cargs = args
            self.save(cls)
            self.save(tuple(cargs))
            self.write(pickle.NEWOBJ)
            if obj is not None:
                self.memoize(obj)
            if state is not None:
                self.save(state)
                self.write(pickle.BUILD)
            return
        super().save_reduce(func, args, state, *rest, obj=obj)


def dump_geobench_pickle(obj: Any, protocol: int = 4) -> bytes:
    """Pickle ``obj`` (records, numpy, plain Python) as GEO-Bench would (default protocol 4)."""
    buf = io.BytesIO()
    _RecordPickler(buf, protocol=protocol).dump(obj)
    return buf.getvalue()
