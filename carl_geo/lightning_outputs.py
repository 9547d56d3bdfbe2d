"""Lightning runs (``carl-geo fit|validate|test|predict --config``, ``carl-geo pretrain``) never
write over the files they were given.

LightningCLI saves the resolved configuration as ``config.yaml`` in the trainer's log folder,
replacing a file of that name (carl_geo asks it to, so repeated runs into one folder work). With
``trainer.logger: false`` the log folder is ``default_root_dir``, often the very folder that holds
the user's own ``config.yaml``: :func:`safe_save_config_callback` refuses that (and a saved config
that would land on a ``--ckpt_path`` checkpoint) with one :class:`~carl_geo.errors.OutputPathError`
before training starts. Resuming from ``last.ckpt`` still updates ``last.ckpt``: that is what
resuming means, and Lightning writes the new checkpoint only after the old one was read.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from carl_geo.io.output_paths import check_outputs

#: Options whose value is a file the run reads.
READ_OPTIONS = {"--config": "config file", "-c": "config file", "--ckpt_path": "checkpoint"}


def files_read(args: Sequence[str]) -> list[tuple[str, Path]]:
    """``(description, path)`` of the config files and checkpoint named on a Lightning command line
    (``--config X``, ``-c X``, ``--config=X``, ``--ckpt_path X``)."""
    out: list[tuple[str, Path]] = []
    args = list(args)
    for i, a in enumerate(args):
        name, eq, value = a.partition("=")
        if name not in READ_OPTIONS:
            continue
        if not eq:
            value = args[i + 1] if i + 1 < len(args) else ""
        if value and os.path.isfile(value):
            out.append((f"{READ_OPTIONS[name]} {value}", Path(value)))
    return out


def safe_save_config_callback(reads: Sequence[tuple[str, Path]]) -> type:
    """A ``SaveConfigCallback`` class that refuses to save the run's config over any of ``reads``."""
    from lightning.pytorch.cli import SaveConfigCallback

    class SafeSaveConfigCallback(SaveConfigCallback):
        """SaveConfigCallback that never writes over a file the run reads."""

        def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
            if not self.already_saved and self.save_to_log_dir and trainer.is_global_zero:
                log_dir = trainer.log_dir
                if log_dir is not None and "://" not in str(log_dir):
                    check_outputs([("saved run configuration", Path(log_dir) / self.config_filename)], reads)
            super().setup(trainer, pl_module, stage)

    return SafeSaveConfigCallback
