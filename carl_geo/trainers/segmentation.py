"""Semantic segmentation with CARL (torchgeo task style)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score, MulticlassJaccardIndex

from carl_geo.class_colors import class_colors
from carl_geo.models.names import ConfigName, HeadName, TaskMode
from carl_geo.models.segmentation import CARLSegmenter
from carl_geo.trainers.base import CARLTaskBase, build_backbone


class CARLSegmentationTask(CARLTaskBase):
    """Pixel-wise classification: batches with ``image`` (B, C, H, W), ``wavelengths`` (B, C) µm,
    optional ``band_mask`` (B, C) and ``mask`` (B, H, W) int64 class indices.

    Logged: ``{train,val,test}_{loss,OverallAccuracy,MeanIoU,F1}`` (torchmetrics; ``MeanIoU`` leaves
    out classes absent from both predictions and labels), ``val_mIoU``/``test_mIoU`` (upstream CARL's
    mIoU: the mean of all K per-class IoUs, absent classes counting 0) and ``test_IoU_<class>``.

    Args:
        num_classes: K.
        config: a name of :data:`carl_geo.models.names.CONFIG_NAMES` (``"tiny"``, ``"published"``, ...;
            ignored when ``weights`` stores its own config).
        weights: backbone weights file (published CARL-SSL checkpoint, carl_geo file, safetensors).
        mode: ``"linear"`` (frozen backbone, upstream's linear probe), ``"finetune"`` (backbone at
            ``lr * backbone_lr_factor``) or ``"scratch"`` (everything at ``lr``).
        head: :data:`carl_geo.models.names.HEAD_NAMES`: ``"linear"`` (1x1 conv), ``"progressive"`` (light upsampling decoder) or ``"upernet"``
            (UperNet on a simple feature pyramid, :class:`~carl_geo.models.segmentation.UperNetHead`).
        head_kwargs: extra head arguments, e.g. ``{"width": 64}`` (progressive, upernet).
        lr, backbone_lr_factor, weight_decay, patience: optimiser settings.
        spatial_init, spectral_init: initial encoder weights when ``weights`` is not given:
            ``None`` (random), ``"timm"`` (upstream's EVA-02 trunk / DINOv2 spectral blocks) or a
            local timm weights file.
        freeze_spectral_encoder, freeze_spatial_encoder: freeze the spectral transformer / the
            spatial trunk in ``finetune`` and ``scratch`` mode (upstream ``freeze_spec_encoder`` /
            ``freeze_spat_encoder``; ``linear`` mode freezes the whole backbone anyway).
        ignore_index: label value excluded from loss and metrics.
        class_names, colors, wavelengths, band_names, sensor: stored in checkpoints for the predictor.
    """

    def __init__(self, num_classes: int, config: ConfigName = "tiny", weights: str | None = None,
                 mode: TaskMode = "finetune", head: HeadName = "linear", lr: float = 1e-3, backbone_lr_factor: float = 0.1, weight_decay: float = 1e-2,
                 patience: int = 10, ignore_index: int | None = None, class_names: list[str] | None = None,
                 colors: list[list[int]] | None = None, wavelengths: list[float] | None = None,
                 band_names: list[str] | None = None, sensor: str | None = None,
                 head_kwargs: dict[str, Any] | None = None, spatial_init: str | None = None,
                 spectral_init: str | None = None, freeze_spectral_encoder: bool = False,
                 freeze_spatial_encoder: bool = False) -> None:
        super().__init__()

    def configure_models(self) -> None:
        hp = self.hparams
        backbone = build_backbone(hp["config"], hp["weights"], spatial_init=hp.get("spatial_init"),
                                  spectral_init=hp.get("spectral_init"))
        self.model = CARLSegmenter(backbone, hp["num_classes"], hp["head"], hp.get("head_kwargs"))
        self._setup_backbone_mode()

    def configure_losses(self) -> None:
        ignore = self.hparams["ignore_index"]
        self.criterion = nn.CrossEntropyLoss(ignore_index=-100 if ignore is None else ignore)

    def configure_metrics(self) -> None:
        k, ignore = self.hparams["num_classes"], self.hparams["ignore_index"]
        metrics = MetricCollection({
            "OverallAccuracy": MulticlassAccuracy(k, average="micro", ignore_index=ignore),
            "MeanIoU": MulticlassJaccardIndex(k, average="macro", ignore_index=ignore),
            "F1": MulticlassF1Score(k, average="macro", ignore_index=ignore),
        })
        self.train_metrics = metrics.clone(prefix="train_")
        self.val_metrics = metrics.clone(prefix="val_")
        self.test_metrics = metrics.clone(prefix="test_")
        # upstream's mIoU: mean of all K per-class IoUs over the epoch (absent classes count 0)
        self.val_iou = MulticlassJaccardIndex(k, average="none", ignore_index=ignore)
        self.test_iou = MulticlassJaccardIndex(k, average="none", ignore_index=ignore)

    def _step(self, batch: dict[str, Any], metrics: MetricCollection, stage: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Loss and predicted classes (B, H, W) of one batch; updates ``metrics``."""
        logits = self._logits(batch)
        target = batch["mask"].long()
        loss = self.criterion(logits, target)
        pred = logits.argmax(1)
        metrics.update(pred, target)
        self.log(f"{stage}_loss", loss, batch_size=target.shape[0], prog_bar=stage != "train")
        return loss, pred

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        loss, _ = self._step(batch, self.train_metrics, "train")
        self.log_dict(self.train_metrics)
        return loss

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        _, pred = self._step(batch, self.val_metrics, "val")
        self.val_iou.update(pred, batch["mask"].long())
        self.log_dict(self.val_metrics, prog_bar=True)

    def on_validation_epoch_end(self) -> None:
        self.log("val_mIoU", self.val_iou.compute().mean(), prog_bar=True)
        self.val_iou.reset()

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        _, pred = self._step(batch, self.test_metrics, "test")
        self.test_iou.update(pred, batch["mask"].long())
        self.log_dict(self.test_metrics)

    def on_test_epoch_end(self) -> None:
        ious = self.test_iou.compute()
        self.log("test_mIoU", ious.mean())
        for name, iou in zip(self.class_names(), ious.tolist()):
            self.log(f"test_IoU_{name}", iou)
        self.test_iou.reset()

    def predict_step(self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0) -> torch.Tensor:
        return self._logits(batch).softmax(dim=1)

    def class_names(self) -> list[str]:
        return list(self.hparams["class_names"] or [f"class {i}" for i in range(self.hparams["num_classes"])])

    def bundle_fields(self) -> dict[str, Any]:
        hp = self.hparams
        return {
            "kind": "segmentation",
            "config": self.model.backbone.config.to_dict(),
            "head": self.model.head_config(),
            "classes": self.class_names(),
            "colors": [list(c) for c in (hp["colors"] or class_colors(self.class_names()))],
            "wavelengths": hp["wavelengths"],
            "band_names": hp["band_names"],
            "sensor": hp["sensor"],
            "normalization": {"mode": "scene"},
            "state_dict_prefix": "model.",
        }
