"""Lazy package exports and names of moved modules.

* :func:`lazy_exports`: ``from carl_geo.inference import predict_raster`` imports the predictor (and
  torch) on first use, not when the package is imported, so the command line can build its parser
  without torch;
* :func:`alias_module` / :func:`alias_package`: a module or package that moved keeps its old name as
  an alias of the same module object (old imports, pickles and ``mock.patch`` targets keep working).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(package: str, exports: Mapping[str, str], namespace: dict[str, Any]
                 ) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for a package whose public names live in sub-modules.

    Args:
        package: the package's ``__name__`` (for error messages).
        exports: public name -> module that defines it.
        namespace: the package's ``globals()``; a resolved name is cached there.
    """

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(exports))

    return __getattr__, __dir__


def alias_module(old: str, new: str) -> Any:
    """Make the module named ``old`` the module ``new`` (same object), for a module that moved.

    Called from the old module's file: ``alias_module(__name__, "carl_geo.new.place")``. Old imports,
    ``mock.patch`` targets and pickled class paths keep working, and both names share one module
    object (no second copy of its classes). Emits a :class:`DeprecationWarning` naming the new place.
    """
    import sys
    import warnings

    warnings.warn(f"{old} moved to {new} and will be removed in carl_geo 0.3; import it from there",
                  DeprecationWarning, stacklevel=3)
    module = importlib.import_module(new)
    sys.modules[old] = module
    return module


class _PackageAlias:
    """Import hook (a ``sys.meta_path`` finder and its loader): ``<old>.<sub>`` is the already imported (or now imported) ``<new>.<sub>``."""

    def __init__(self, old: str, new: str) -> None:
        self.old, self.new = old, new
        self._specs: dict[str, Any] = {}

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if not fullname.startswith(self.old + "."):
            return None
        import importlib.util

        target_name = self.new + fullname[len(self.old):]
        if importlib.util.find_spec(target_name) is None:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec: Any) -> Any:
        module = importlib.import_module(self.new + spec.name[len(self.old):])
        self._specs[spec.name] = module.__spec__
        return module

    def exec_module(self, module: Any) -> None:
        # the import system set ``module.__spec__`` to the alias spec: give the module its own back
        for alias, real in list(self._specs.items()):
            if real is not None and real.name == module.__name__:
                module.__spec__ = real
                del self._specs[alias]


def alias_package(old: str, new: str, namespace: dict[str, Any]) -> Callable[[str], Any]:
    """Keep a renamed package importable under its ``old`` name (issue #19).

    Sub-modules ``old.x`` resolve to the very modules ``new.x`` (an import hook), and attributes of
    ``old`` are forwarded to ``new``; a :class:`DeprecationWarning` names the new package. Returns
    the old package's module ``__getattr__``.
    """
    import sys
    import warnings

    warnings.warn(f"{old} was renamed {new} and will be removed in carl_geo 0.3; import from {new}",
                  DeprecationWarning, stacklevel=3)
    if not any(isinstance(f, _PackageAlias) and f.old == old for f in sys.meta_path):
        sys.meta_path.insert(0, _PackageAlias(old, new))

    def __getattr__(name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        value = getattr(importlib.import_module(new), name)
        namespace[name] = value
        return value

    return __getattr__
