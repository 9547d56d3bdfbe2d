"""Scene classification (single- and multi-label) with CARL (torchgeo task style)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torchmetrics import MetricCollection
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassF1Score,
    MultilabelAccuracy,
    MultilabelAveragePrecision,
    MultilabelF1Score,
)

from carl_geo.models.classification import CARLClassifier
from carl_geo.models.names import ConfigName, TaskMode
from carl_geo.trainers.base import CARLTaskBase, build_backbone


class CARLClassificationTask(CARLTaskBase):
    """Image-level classification: batches with ``image``, ``wavelengths``, optional ``band_mask`` and
    ``label`` (B,) int64 (single-label) or (B, K) {0, 1} (``multilabel=True``: BCE loss, equal to
    upstream's ``MultiLabelSoftMarginLoss`` for m-bigearthnet).

    Logged: ``{train,val,test}_{loss,Accuracy,F1}``; multi-label also ``MicroAP`` (micro average
    precision over all (sample, label) pairs, upstream's m-bigearthnet metric).

    Args: as :class:`~carl_geo.trainers.CARLSegmentationTask`, plus ``multilabel``.
    """

    def __init__(self, num_classes: int, multilabel: bool = False, config: ConfigName = "tiny",
                 weights: str | None = None, mode: TaskMode = "finetune", lr: float = 1e-3, backbone_lr_factor: float = 0.1,
                 weight_decay: float = 1e-2, patience: int = 10, class_names: list[str] | None = None,
                 wavelengths: list[float] | None = None, sensor: str | None = None, spatial_init: str | None = None,
                 spectral_init: str | None = None, freeze_spectral_encoder: bool = False,
                 freeze_spatial_encoder: bool = False) -> None:
        super().__init__()

    def configure_models(self) -> None:
        hp = self.hparams
        backbone = build_backbone(hp["config"], hp["weights"], spatial_init=hp.get("spatial_init"),
                                  spectral_init=hp.get("spectral_init"))
        self.model = CARLClassifier(backbone, hp["num_classes"])
        self._setup_backbone_mode()

    def configure_losses(self) -> None:
        self.criterion = nn.BCEWithLogitsLoss() if self.hparams["multilabel"] else nn.CrossEntropyLoss()

    def configure_metrics(self) -> None:
        k = self.hparams["num_classes"]
        if self.hparams["multilabel"]:
            metrics = MetricCollection({"F1": MultilabelF1Score(k, average="micro"),
                                        "Accuracy": MultilabelAccuracy(k, average="micro"),
                                        "MicroAP": MultilabelAveragePrecision(k, average="micro")})
        else:
            metrics = MetricCollection({"Accuracy": MulticlassAccuracy(k, average="micro"),
                                        "F1": MulticlassF1Score(k, average="macro")})
        self.train_metrics = metrics.clone(prefix="train_")
        self.val_metrics = metrics.clone(prefix="val_")
        self.test_metrics = metrics.clone(prefix="test_")

    def _step(self, batch: dict[str, Any], metrics: MetricCollection, stage: str) -> torch.Tensor:
        logits = self._logits(batch)
        target = batch["label"]
        if self.hparams["multilabel"]:
            loss = self.criterion(logits, target.float())
            metrics.update(logits.sigmoid(), target.long())
        else:
            loss = self.criterion(logits, target.long())
            metrics.update(logits.argmax(1), target.long())
        self.log(f"{stage}_loss", loss, batch_size=logits.shape[0], prog_bar=stage != "train")
        self.log_dict(metrics, prog_bar=stage == "val")
        return loss

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        return self._step(batch, self.train_metrics, "train")

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._step(batch, self.val_metrics, "val")

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._step(batch, self.test_metrics, "test")

    def predict_step(self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0) -> torch.Tensor:
        logits = self._logits(batch)
        return logits.sigmoid() if self.hparams["multilabel"] else logits.softmax(dim=1)

    def bundle_fields(self) -> dict[str, Any]:
        hp = self.hparams
        return {"kind": "classification", "config": self.model.backbone.config.to_dict(),
                "classes": list(hp["class_names"] or []), "multilabel": hp["multilabel"],
                "wavelengths": hp["wavelengths"], "sensor": hp["sensor"], "normalization": {"mode": "scene"},
                "state_dict_prefix": "model."}
