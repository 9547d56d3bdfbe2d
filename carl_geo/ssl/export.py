"""``carl-geo export``: a CARL-SSL Lightning checkpoint -> a slim backbone-only file.

The output holds the backbone tensors of the chosen sub-tree (``student`` = ``model.*`` without the
predictors, what upstream's downstream code loads; ``teacher`` = the EMA copy), the architecture,
and metadata (wavelengths of the pre-training sensors, training image size, optimiser step), and
loads with :func:`carl_geo.load_carl` / :func:`carl_geo.load_bundle` without further arguments.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from carl_geo.errors import check_choice
from carl_geo.io.output_paths import check_outputs, reads_of
from carl_geo.models.checkpoint import (
    CheckpointError,
    backbone_state_dict,
    config_from_checkpoint,
    load_backbone_weights,
    read_checkpoint,
    save_carl,
)
from carl_geo.models.config import CARLConfig

WHICH = ("student", "teacher")


def export_backbone(checkpoint: str | os.PathLike, out: str | os.PathLike, which: str = "student", *,
                    overwrite: bool = True) -> Path:
    """Write the ``which`` backbone of ``checkpoint`` to ``out`` (``.safetensors`` recommended; written
    atomically). ``out`` may never be ``checkpoint`` (also through a symlink); with
    ``overwrite=False`` it may not exist either.

    Raises:
        OutputPathError: ``out`` is the checkpoint, exists (``overwrite=False``) or has no folder.
        ValueError: bad ``which``; CheckpointError: unreadable checkpoint, no such sub-tree, or
        weights that do not fit the stored architecture.
    """
    from carl_geo.models.carl import CARL

    check_choice("which", which, WHICH)
    out = check_outputs([("output", out)], reads_of(files=[("checkpoint", checkpoint)]), overwrite=overwrite)[0]
    ckpt = read_checkpoint(checkpoint)
    ssl_meta: dict[str, Any] = dict(ckpt.get("carl_ssl") or {})
    config = CARLConfig.from_dict(ssl_meta["config"]) if "config" in ssl_meta else config_from_checkpoint(ckpt)
    model = CARL(config)
    try:
        load_backbone_weights(model, backbone_state_dict(ckpt["state_dict"], which))
    except CheckpointError as e:
        raise CheckpointError(f"{checkpoint}: {e}") from None
    meta = {
        "source": "carl-ssl",
        "checkpoint": Path(checkpoint).name,
        "which": which,
        "global_step": ckpt.get("global_step"),
        "epoch": ckpt.get("epoch"),
        "image_size": ssl_meta.get("image_size"),
        "pretrain_sensors": ssl_meta.get("pretrain_sensors", []),
    }
    return save_carl(model, out, meta=meta)
