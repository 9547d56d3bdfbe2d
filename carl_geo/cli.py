"""``carl-geo`` command line: one sub-command per job.

Each area of the package contributes its sub-commands through a ``register(subparsers)``
function (see :data:`SUBCOMMAND_MODULES`); a sub-command sets ``func(args) -> int``.
Errors a user can fix (bad input, missing files) exit with status 2 and one clear line.
"""

from __future__ import annotations

import argparse
import importlib
import sys

#: Modules whose ``register(subparsers)`` adds sub-commands, in help order.
SUBCOMMAND_MODULES = (
    "carl_geo.demo",
    "carl_geo.inference.cli",
    "carl_geo.training.cli",
    "carl_geo.evaluation.geobench.cli",
    "carl_geo.weights.cli",
)


#: Sub-commands handed to Lightning's own CLI (``carl-geo fit --config configs/x.yaml``);
#: see :func:`is_lightning_call` for ``predict``.
LIGHTNING_SUBCOMMANDS = ("fit", "validate", "test", "predict")


def is_lightning_call(argv: list[str]) -> bool:
    """``fit``/``validate``/``test`` always go to Lightning; ``predict`` only with ``--config``/``-c``
    or ``--print_config`` (``carl-geo predict SRC DST --model M`` is the tiled raster predictor)."""
    if argv[0] != "predict":
        return True
    return any(a in ("-c", "--print_config") or a.startswith(("--config", "--print_config")) for a in argv[1:])


class UserError(Exception):
    """An error caused by the user's input; printed as one line, exit status 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="carl-geo",
        description="CARL for remote sensing: segment, embed and train on rasters of any sensor.",
        epilog="Lightning training: carl-geo {fit,validate,test,predict} --config configs/<...>.yaml "
               "(see carl-geo fit --help).",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    from carl_geo.ssl.cli import register_export

    for name in SUBCOMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name is not None and e.name.startswith("carl_geo"):
                continue  # that part of the package is not built yet
            raise
        module.register(sub)
    register_export(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "pretrain":
        from carl_geo.ssl.cli import run_pretrain

        return run_pretrain(argv[1:])
    if argv and argv[0] in LIGHTNING_SUBCOMMANDS and is_lightning_call(argv):
        from carl_geo.lightning_cli import run

        return run(argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 1
    from carl_geo.models.checkpoint import CheckpointError

    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("carl-geo: interrupted", file=sys.stderr)
        return 130
    except (UserError, CheckpointError, ValueError, FileNotFoundError) as e:
        print(f"carl-geo {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
