"""``carl-geo fit|validate|test|predict --config configs/<...>.yaml``: Lightning's own CLI.

Any :class:`~carl_geo.trainers` task (``model.class_path``) and any LightningDataModule
(``data.class_path``) can be combined in a YAML config; every Lightning trainer option works
(``--trainer.devices=4 --trainer.strategy=ddp`` for multi-GPU, ``--trainer.num_nodes`` for multi-node).
The saved run configuration never replaces the ``--config`` file or ``--ckpt_path``
(:mod:`carl_geo.lightning_outputs`).
"""

from __future__ import annotations

from collections.abc import Sequence

SUBCOMMANDS = ("fit", "validate", "test", "predict")


def run(args: Sequence[str]) -> int:
    """Run LightningCLI with ``args`` (starting with the sub-command)."""
    import lightning as L
    from lightning.pytorch.cli import LightningCLI

    from carl_geo.lightning_outputs import files_read, safe_save_config_callback
    from carl_geo.trainers.base import CARLTaskBase

    LightningCLI(
        model_class=CARLTaskBase,
        datamodule_class=L.LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        args=list(args),
        save_config_callback=safe_save_config_callback(files_read(args)),
        save_config_kwargs={"overwrite": True},
        auto_configure_optimizers=False,
    )
    return 0
