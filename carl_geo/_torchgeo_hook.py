"""Register CARL with torchgeo's model API once both carl_geo and ``torchgeo.models`` are imported.

``import carl_geo`` must stay cheap (the command line answers ``--help`` without torch), yet
``import carl_geo, torchgeo.models as m; m.get_model("carl")`` must work. So: when
``torchgeo.models`` is already imported, :func:`install` registers at once; otherwise it puts a
finder on ``sys.meta_path`` that registers right after ``torchgeo.models`` has been executed,
whenever (and by whomever) it is first imported. ``CARL_GEO_NO_TORCHGEO=1`` turns it off.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import os
import sys
from types import ModuleType
from typing import Any

TARGET = "torchgeo.models"


def _register() -> None:
    from carl_geo.models.registry import register_with_torchgeo

    register_with_torchgeo()


class _RegisteringLoader(importlib.abc.Loader):
    """Runs torchgeo.models' own loader, then registers CARL; everything else goes to that loader."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self._inner.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self._inner.exec_module(module)
        _register()

    def __getattr__(self, name: str) -> Any:  # get_resource_reader, is_package, ...
        return getattr(self._inner, name)


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname: str, path: Any, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        if fullname != TARGET:
            return None
        remove()
        spec = None
        for finder in sys.meta_path:  # the finder that would have found it (site-packages, editable, ...)
            find = getattr(finder, "find_spec", None)
            spec = find(fullname, path, target) if find is not None else None
            if spec is not None:
                break
        if spec is None or spec.loader is None:
            return spec
        spec.loader = _RegisteringLoader(spec.loader)
        return spec


_FINDER = _Finder()


def remove() -> None:
    """Take the finder off ``sys.meta_path`` (it fires once)."""
    if _FINDER in sys.meta_path:
        sys.meta_path.remove(_FINDER)


def install() -> None:
    """Register now if ``torchgeo.models`` is loaded, else when it gets imported."""
    if os.environ.get("CARL_GEO_NO_TORCHGEO"):
        return
    if TARGET in sys.modules:
        _register()
    elif _FINDER not in sys.meta_path:
        sys.meta_path.insert(0, _FINDER)
