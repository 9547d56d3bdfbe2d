"""Shared parts of the CARL tasks: backbone construction, optimiser, batch unpacking.

The tasks subclass torchgeo's ``BaseTask`` (``torchgeo.tasks`` in torchgeo >= 0.9,
``torchgeo.trainers`` in 0.8), which saves hyper-parameters and calls ``configure_models``,
``configure_losses`` and ``configure_metrics``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from carl_geo.errors import check_choice
from carl_geo.models.carl import CARL
from carl_geo.models.checkpoint import load_carl
from carl_geo.models.config import get_config
from carl_geo.models.names import MODE_NAMES

try:  # torchgeo >= 0.9
    from torchgeo.tasks import BaseTask
except ImportError:  # torchgeo 0.8
    from torchgeo.trainers import BaseTask  # type: ignore[no-redef]

MODES = MODE_NAMES  # "linear", "finetune", "scratch"


def build_backbone(config: str, weights: str | None, which: str = "student", spatial_init: str | None = None,
                   spectral_init: str | None = None) -> CARL:
    """A CARL backbone: from a weights file (any format :func:`load_carl` accepts; the config the
    file stores wins, ``config`` names the architecture of files that store none) or, without
    one, built from the named config with ``spatial_init``/``spectral_init`` weights (``None`` =
    random; ``"timm"`` = upstream's EVA-02 / DINOv2 initialisation; or timm weights files, see
    :mod:`carl_geo.models.timm_weights`)."""
    if weights:
        return load_carl(weights, which=which, default_config=get_config(config))
    return CARL(get_config(config), spatial_init=spatial_init, spectral_init=spectral_init)


def encoder_modules(backbone: CARL, spectral: bool, spatial: bool) -> list[nn.Module]:
    """The backbone parts that upstream's ``freeze_spec_encoder`` / ``freeze_spat_encoder`` freeze:
    the spectral transformer (``spectral_tf``; the patch embedder and the linear connector stay
    trainable, as upstream) and the timm spatial trunk (``spatial_encoder``)."""
    parts: list[nn.Module] = []
    if spectral:
        parts.append(backbone.spectral_tf)
    if spatial:
        parts.append(backbone.spatial_encoder)
    return parts


class CARLTaskBase(BaseTask):
    """Common behaviour. Subclasses set ``self.model`` (backbone at ``self.model.backbone``)."""

    monitor = "val_loss"
    ignore = None  # torchgeo's BaseTask drops a ``weights`` argument; ours is a file path worth keeping

    def _setup_backbone_mode(self) -> None:
        mode = check_choice("mode", self.hparams["mode"], MODES)
        if mode == "linear":
            for p in self.model.backbone.parameters():
                p.requires_grad_(False)
        for part in self._frozen_encoders():
            part.requires_grad_(False)

    def _frozen_encoders(self) -> list[nn.Module]:
        """Encoders frozen by ``freeze_spectral_encoder`` / ``freeze_spatial_encoder`` (hparams)."""
        return encoder_modules(self.model.backbone, bool(self.hparams.get("freeze_spectral_encoder")),
                               bool(self.hparams.get("freeze_spatial_encoder")))

    def on_train_epoch_start(self) -> None:
        if self.hparams["mode"] == "linear":
            self.model.backbone.eval()  # frozen: no dropout / batch-norm updates
        for part in self._frozen_encoders():
            part.eval()

    def configure_optimizers(self) -> Any:
        """AdamW; the backbone gets ``lr * backbone_lr_factor`` in ``finetune`` mode, nothing in
        ``linear`` mode (frozen encoders get nothing in any mode); ReduceLROnPlateau on ``val_loss``."""
        lr = self.hparams["lr"]
        backbone = [p for p in self.model.backbone.parameters() if p.requires_grad]
        backbone_ids = {id(p) for p in self.model.backbone.parameters()}
        head = [p for p in self.model.parameters() if p.requires_grad and id(p) not in backbone_ids]
        factor = self.hparams["backbone_lr_factor"] if self.hparams["mode"] == "finetune" else 1.0
        groups = [{"params": head, "lr": lr}]
        if backbone:
            groups.append({"params": backbone, "lr": lr * factor})
        optimizer = torch.optim.AdamW(groups, lr=lr, weight_decay=self.hparams["weight_decay"])
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, patience=self.hparams["patience"])
        # strict=False: runs without a validation loader (or validating every n epochs) only skip the LR step
        return {"optimizer": optimizer,
                "lr_scheduler": {"scheduler": scheduler, "monitor": self.monitor, "strict": False}}

    def forward(self, image: Tensor, wavelengths: Tensor, band_mask: Tensor | None = None) -> Tensor:
        return self.model(image, wavelengths, band_mask)

    def _logits(self, batch: dict[str, Any]) -> Tensor:
        return self(batch["image"], batch["wavelengths"], batch.get("band_mask"))

    def bundle_fields(self) -> dict[str, Any]:
        """What :func:`carl_geo.load_bundle` needs besides the weights (stored in the checkpoint)."""
        return {}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Store the model-bundle facts (plain types) so the tiled predictor can load the Lightning
        checkpoint with no extra arguments."""
        checkpoint["carl_geo"] = self.bundle_fields()


def freeze_report(model: nn.Module) -> str:
    """'N trainable / M total parameters' for logs."""
    n = sum(p.numel() for p in model.parameters() if p.requires_grad)
    m = sum(p.numel() for p in model.parameters())
    return f"{n:,} trainable / {m:,} total parameters"
