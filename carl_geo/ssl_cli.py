"""Command line of CARL-SSL: ``carl-geo pretrain`` (LightningCLI) and ``carl-geo export``
(``carl_geo.ssl.cli`` before issue #29; that name still imports. It sits beside the other command-line
modules: it imports the trainers, which sit above :mod:`carl_geo.ssl`).

Pre-training::

    carl-geo pretrain --config configs/ssl_tiny_cpu.yaml                 # CPU demo
    carl-geo pretrain --config configs/ssl_published.yaml --ckpt_path runs/ssl/checkpoints/last.ckpt   # resume
    carl-geo pretrain --config configs/ssl_published.yaml --trainer.devices 4 --trainer.strategy ddp   # 4 GPUs
    # multi-node (e.g. SLURM, 2 nodes x 4 GPUs; one task per GPU):
    srun --nodes 2 --ntasks-per-node 4 carl-geo pretrain --config configs/ssl_published.yaml \\
         --trainer.devices 4 --trainer.num_nodes 2 --trainer.strategy ddp
    # gradient accumulation / checkpoint period:
    carl-geo pretrain --config ... --trainer.accumulate_grad_batches 4 \\
         --trainer.callbacks+=ModelCheckpoint --trainer.callbacks.every_n_train_steps 500

Every LightningCLI option works (``carl-geo pretrain --help``, ``--print_config``). The trainer
defaults to ``use_distributed_sampler=False``: the data module shards sensor-grouped batches itself.
A checkpoint given with ``--ckpt_path`` is read with ``weights_only=True`` unless
``--weights_only`` says otherwise.

Export of a backbone::

    carl-geo export runs/ssl/checkpoints/last.ckpt carl_ssl.safetensors --which student
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

LIGHTNING_SUBCOMMANDS = ("fit", "validate")


def run_pretrain(args: Sequence[str]) -> int:
    """Run LightningCLI (:func:`carl_geo.lightning_cli.run`) with :class:`~carl_geo.trainers.CARLPretrainTask`
    on ``args`` (what follows ``carl-geo pretrain``); ``fit`` is implied unless ``args`` start with
    ``fit``/``validate``."""
    from carl_geo.lightning_cli import run
    from carl_geo.trainers.carl_ssl import CARLPretrainTask

    args = list(args)
    if not args or args[0] not in LIGHTNING_SUBCOMMANDS:
        args = ["fit", *args]
    return run(args, model_class=CARLPretrainTask, trainer_defaults={"use_distributed_sampler": False})


def _export(args: argparse.Namespace) -> int:
    from carl_geo.ssl.export import export_backbone

    path = export_backbone(args.checkpoint, args.output, which=args.which, overwrite=args.overwrite)
    print(f"wrote {args.which} backbone to {path}")
    return 0


def register_export(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``carl-geo export CKPT OUT.safetensors [--which student|teacher]``."""
    p = subparsers.add_parser(
        "export", help="write the backbone of a CARL-SSL checkpoint to a slim safetensors file",
        description="Extract the student (default; what upstream's downstream code uses) or the EMA teacher "
                    "backbone of a CARL-SSL Lightning checkpoint, with its config and the pre-training "
                    "wavelengths, into a file that carl_geo.load_carl / load_bundle read.")
    p.add_argument("checkpoint", help="CARL-SSL Lightning checkpoint (.ckpt)")
    p.add_argument("output", help="output file (.safetensors, or .pt)")
    p.add_argument("--which", choices=("student", "teacher"), default="student",
                   help="backbone to export (default: student)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file (never the checkpoint)")
    p.set_defaults(func=_export)
    return p
