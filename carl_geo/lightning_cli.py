"""``carl-geo fit|validate|test|predict --config configs/<...>.yaml``: Lightning's own CLI.

Any :class:`~carl_geo.trainers` task (``model.class_path``) and any LightningDataModule
(``data.class_path``) can be combined in a YAML config; every Lightning trainer option works
(``--trainer.devices=4 --trainer.strategy=ddp`` for multi-GPU, ``--trainer.num_nodes`` for multi-node).
The saved run configuration never replaces the ``--config`` file or ``--ckpt_path``
(:mod:`carl_geo.lightning_outputs`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

SUBCOMMANDS = ("fit", "validate", "test", "predict")


def run(args: Sequence[str], model_class: type, trainer_defaults: dict[str, Any] | None = None) -> int:
    """Run LightningCLI with ``args`` (starting with the sub-command): the one LightningCLI wrapper of
    carl_geo (``carl-geo fit|validate|test|predict`` and ``carl-geo pretrain``).

    Args:
        args: the sub-command and its options.
        model_class: the task class or base class; subclasses are accepted (``carl-geo fit`` passes
            :class:`~carl_geo.trainers.base.CARLTaskBase`: any carl_geo task named by ``model.class_path``;
            ``carl-geo pretrain`` passes :class:`~carl_geo.trainers.CARLPretrainTask`).
        trainer_defaults: Trainer defaults (e.g. ``{"use_distributed_sampler": False}``).

    A checkpoint given with ``--ckpt_path`` is read with ``weights_only=True`` unless ``--weights_only``
    says otherwise; the saved run configuration never replaces a file the run reads.
    """
    import lightning as L
    from lightning.pytorch.cli import LightningCLI

    from carl_geo.lightning_outputs import files_read, safe_save_config_callback

    args = list(args)
    resuming = any(a == "--ckpt_path" or a.startswith("--ckpt_path=") for a in args)
    if resuming and not any(a.startswith("--weights_only") for a in args):
        args += ["--weights_only", "true"]  # checkpoints are read without unpickling code
    LightningCLI(
        model_class=model_class,
        datamodule_class=L.LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        args=args,
        save_config_callback=safe_save_config_callback(files_read(args)),
        save_config_kwargs={"overwrite": True},
        trainer_defaults=dict(trainer_defaults or {}),
        auto_configure_optimizers=False,
    )
    return 0
