"""``carl-geo`` command line: one sub-command per job.

Each area of the package contributes its sub-commands through a ``register(subparsers)``
function (see :data:`SUBCOMMAND_MODULES`); a sub-command sets ``func(args) -> int``. Modules that
register sub-commands import only argparse-level code at import time, so ``carl-geo --help`` and
argument errors answer without loading torch.

How a run ends (:mod:`carl_geo.cli_runtime`):

* an error the user can fix (carl_geo's :class:`~carl_geo.errors.CarlGeoError` family, a missing
  file, a Lightning configuration error) prints ONE line ``carl-geo <command>: error: ...`` and
  exits with status 2; a file that cannot be read or written (corrupt raster, disk full, read-only
  folder) prints one line naming the file and the cause, status 1;
* ``--debug`` (anywhere on the line) or ``CARL_GEO_DEBUG=1`` also prints the traceback;
* any other exception is a bug: Python's traceback, status 1;
* Ctrl-C (status 130) and SIGTERM (143) stop the run; no temporary file is left behind.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import traceback

from carl_geo.cli_runtime import (
    EXIT_INTERRUPTED,
    EXIT_TERMINATED,
    Terminated,
    error_line,
    one_line_warnings,
    quiet_gdal_log,
    set_gdal_network_defaults,
    sigterm_as_interrupt,
)
from carl_geo.errors import CarlGeoError, set_interface

#: Modules whose ``register(subparsers)`` adds sub-commands, in help order.
SUBCOMMAND_MODULES = (
    "carl_geo.demo",
    "carl_geo.inference.cli",
    "carl_geo.polygon_training.cli",
    "carl_geo.evaluation.geobench.cli",
    "carl_geo.weights.cli",
)


#: Sub-commands handed to Lightning's own CLI (``carl-geo fit --config configs/x.yaml``);
#: see :func:`is_lightning_call` for ``predict``.
LIGHTNING_SUBCOMMANDS = ("fit", "validate", "test", "predict")

#: Environment variable that turns on tracebacks (like ``--debug``).
DEBUG_ENV = "CARL_GEO_DEBUG"

#: Kept for old imports; carl_geo's user errors are :class:`~carl_geo.errors.CarlGeoError`.
UserError = CarlGeoError


def is_lightning_call(argv: list[str]) -> bool:
    """``fit``/``validate``/``test`` always go to Lightning; ``predict`` only with ``--config``/``-c``
    or ``--print_config`` (``carl-geo predict SRC DST --model M`` is the tiled raster predictor)."""
    if argv[0] != "predict":
        return True
    return any(a in ("-c", "--print_config") or a.startswith(("--config", "--print_config")) for a in argv[1:])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="carl-geo",
        description="CARL for remote sensing: segment, embed and train on rasters of any sensor.",
        epilog="Lightning training: carl-geo {fit,validate,test,predict} --config configs/<...>.yaml "
               "(see carl-geo fit --help). Errors are one line; add --debug (or set CARL_GEO_DEBUG=1) "
               "for the traceback.",
    )
    parser.add_argument("--debug", action="store_true",
                        help=f"print the traceback of an error (also {DEBUG_ENV}=1); allowed anywhere on the line")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMAND_MODULES:
        importlib.import_module(name).register(sub)
    importlib.import_module("carl_geo.ssl_cli").register_export(sub)
    return parser


def _dispatch(argv: list[str]) -> int:
    if argv and argv[0] == "pretrain":
        from carl_geo.ssl_cli import run_pretrain

        return run_pretrain(argv[1:])
    if argv and argv[0] in LIGHTNING_SUBCOMMANDS and is_lightning_call(argv):
        from carl_geo.lightning_cli import run
        from carl_geo.trainers.base import CARLTaskBase

        return run(argv, model_class=CARLTaskBase)
    from carl_geo.cli_args import join_option_values

    parser = build_parser()
    args = parser.parse_args(join_option_values(argv))
    if not getattr(args, "func", None):
        parser.print_help()
        return 1
    return int(args.func(args) or 0)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or os.environ.get(DEBUG_ENV, "") not in ("", "0")
    argv = [a for a in argv if a != "--debug"]
    command = next((a for a in argv if not a.startswith("-")), "")
    prefix = f"carl-geo {command}".strip()
    previous = set_interface("cli")
    set_gdal_network_defaults()
    try:
        with sigterm_as_interrupt(), one_line_warnings(prefix), quiet_gdal_log(not debug) as gdal_messages:
            try:
                return _dispatch(argv)
            except KeyboardInterrupt as e:
                if debug:
                    traceback.print_exc()
                terminated = isinstance(e, Terminated)
                print(f"{prefix}: {'terminated (SIGTERM)' if terminated else 'interrupted'}", file=sys.stderr)
                return EXIT_TERMINATED if terminated else EXIT_INTERRUPTED
            except Exception as e:
                found = error_line(e, gdal_messages)
                if found is None:
                    raise
                if debug:
                    traceback.print_exc()
                print(f"{prefix}: error: {found[0]}", file=sys.stderr)
                return found[1]
    finally:
        set_interface(previous)


if __name__ == "__main__":
    sys.exit(main())
