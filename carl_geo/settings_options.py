"""Command-line options generated from a settings dataclass (:class:`~carl_geo.inference.PredictSettings`,
:class:`~carl_geo.polygon_training.recipe.TrainingRecipe`).

A field that should be an option carries ``metadata=option_meta(group, help, ...)``; :func:`add_options` adds one
``--field-name`` per such field (choices from its ``Literal`` type, the field's default, a value parser) and
:func:`from_options` builds the dataclass from the parsed namespace. The settings object stays the one place that
knows each default, its check and its help text. Imports neither torch nor numpy.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from collections.abc import Mapping
from typing import Any, Literal, get_args, get_origin


def option_meta(group: str | None, help: str, *, metavar: str | None = None, parse: Any = None,
                short: str | None = None, cli_default: Any = dataclasses.MISSING) -> dict[str, Any]:
    """Field metadata for the command line: option group, help text, metavar, value parser, a short flag, and a
    default of the option that differs from the field's (e.g. None: "ask the model")."""
    meta: dict[str, Any] = {"group": group, "help": help, "metavar": metavar, "parse": parse, "short": short}
    if cli_default is not dataclasses.MISSING:
        meta["cli_default"] = cli_default
    return {"cli": meta}


def choices_of(tp: Any) -> tuple[str, ...] | None:
    """The string values of a ``Literal`` type (also inside ``X | None`` / ``Optional``), else None."""
    if get_origin(tp) is Literal:
        vals = tuple(a for a in get_args(tp) if isinstance(a, str))
        return vals or None
    if get_origin(tp) in (typing.Union, types.UnionType):
        for arg in get_args(tp):
            found = choices_of(arg)
            if found:
                return found
    return None


def option_fields(cls: type) -> list[tuple[dataclasses.Field, Any]]:
    """(field, resolved type) of every field of ``cls`` that carries option metadata, in declaration order."""
    hints = typing.get_type_hints(cls)
    return [(f, hints.get(f.name)) for f in dataclasses.fields(cls) if "cli" in f.metadata]


def add_options(cls: type, groups: Mapping[str | None, Any]) -> None:
    """Add one ``--option`` per option field of the dataclass ``cls`` to argparse ``groups`` (group title ->
    parser or argument group; None is the main group), with the fields' defaults, choices and help."""
    defaults = cls()
    for f, tp in option_fields(cls):
        meta = f.metadata["cli"]
        flags = ["--" + f.name.replace("_", "-")] + ([meta["short"]] if meta.get("short") else [])
        target = groups[meta["group"]]
        default = meta.get("cli_default", getattr(defaults, f.name))
        if tp is bool:
            target.add_argument(*flags, dest=f.name, action="store_true", help=meta["help"])
            continue
        kwargs: dict[str, Any] = {"dest": f.name, "default": default, "help": meta["help"]}
        choices = choices_of(tp)
        if choices and meta.get("parse") is None:
            kwargs["choices"] = choices
        if meta.get("parse") is not None:
            kwargs["type"] = meta["parse"]
        if meta.get("metavar"):
            kwargs["metavar"] = meta["metavar"]
        target.add_argument(*flags, **kwargs)


def from_options(cls: type, args: argparse.Namespace, base: Any = None, **overrides: Any) -> Any:
    """``cls`` (or ``base`` with changes) from the options parsed by :func:`add_options` (``overrides`` win; an
    option left at None where the field has another default keeps the field's default)."""
    defaults = base if base is not None else cls()
    values = {f.name: getattr(args, f.name) for f, _ in option_fields(cls) if hasattr(args, f.name)}
    values = {n: v for n, v in values.items() if v is not None or getattr(defaults, n) is None}
    return dataclasses.replace(defaults, **{**values, **overrides})
