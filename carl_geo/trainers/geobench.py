"""The GEO-Bench protocol on top of carl_geo's Lightning tasks (``carl_geo.evaluation.geobench.tasks``
before issue #19; that name still imports; the runner is :mod:`carl_geo.evaluation.geobench.runner`).

:class:`GeoBenchClassificationTask` and :class:`GeoBenchSegmentationTask` subclass
:class:`carl_geo.trainers.CARLClassificationTask` / :class:`~carl_geo.trainers.CARLSegmentationTask`
(frozen backbone in ``mode="linear"``, global average pool + linear layer, or a 1x1 conv head)
and add what upstream's ``cls_trainer.py`` / ``seg_trainer.py`` do besides:

* the input pipeline of :mod:`carl_geo.datasets.geobench.augment` (resize to ``image_size``, flips,
  random resized crops);
* a cosine learning-rate schedule over the epochs (upstream ``CosineAnnealingLR``); AdamW with
  ``weight_decay=0`` equals upstream's Adam;
* segmentation: logits = bilinear upsampling of the 1x1-conv output straight to the label size
  (upstream's mIoU, ``val_mIoU``/``test_mIoU``, is logged by the base task).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from carl_geo.datasets.geobench.augment import eval_transform, train_transform
from carl_geo.models.names import ConfigName, HeadName, TaskMode
from carl_geo.trainers.classification import CARLClassificationTask
from carl_geo.trainers.segmentation import CARLSegmentationTask


class _ProtocolMixin:
    """Batch pipeline and schedule shared by both tasks (needs hparams ``image_size``, ``augment``)."""

    hparams: Any
    trainer: Any

    def on_after_batch_transfer(self, batch: dict[str, Any], dataloader_idx: int) -> dict[str, Any]:
        size = int(self.hparams["image_size"] or 0)
        if self.trainer.training and self.hparams["augment"]:
            return train_transform(batch, size)
        return eval_transform(batch, size)

    def configure_optimizers(self) -> Any:
        """The parent's AdamW parameter groups (head at ``lr``; backbone frozen, or at
        ``lr * backbone_lr_factor`` when fine-tuning) with a cosine schedule over ``max_epochs``."""
        optimizer = super().configure_optimizers()["optimizer"]  # type: ignore[misc]
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, int(self.trainer.max_epochs)))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}


class GeoBenchClassificationTask(_ProtocolMixin, CARLClassificationTask):
    """Scene classification under the GEO-Bench protocol.

    Args: as :class:`~carl_geo.trainers.CARLClassificationTask`, plus
        image_size: side the images are resized to (upstream 128; 0 keeps the native size).
        augment: random flips during training.

    Logged: ``{train,val,test}_{loss,Accuracy,F1}`` (micro F1 for multi-label, macro F1 otherwise)
    and, multi-label, ``MicroAP`` (upstream's m-bigearthnet metric, used for model selection).
    """

    def __init__(self, num_classes: int, multilabel: bool = False, config: ConfigName = "published",
                 weights: str | None = None, mode: TaskMode = "linear", lr: float = 1e-3, backbone_lr_factor: float = 0.1,
                 weight_decay: float = 0.0, class_names: list[str] | None = None, image_size: int = 128,
                 augment: bool = True, spatial_init: str | None = None, spectral_init: str | None = None) -> None:
        super().__init__(num_classes=num_classes, multilabel=multilabel, config=config, weights=weights, mode=mode,
                         lr=lr, backbone_lr_factor=backbone_lr_factor, weight_decay=weight_decay,
                         class_names=class_names, spatial_init=spatial_init, spectral_init=spectral_init)


class GeoBenchSegmentationTask(_ProtocolMixin, CARLSegmentationTask):
    """Semantic segmentation under the GEO-Bench protocol (1x1-conv linear head by default; also
    ``"progressive"`` and ``"upernet"`` with ``head_kwargs``).

    Args: as :class:`~carl_geo.trainers.CARLSegmentationTask`, plus ``image_size`` and ``augment``.

    Logged: ``{val,test}_{loss,OverallAccuracy,MeanIoU,F1,mIoU}`` and ``test_IoU_<class>``.
    """

    def __init__(self, num_classes: int, config: ConfigName = "published", weights: str | None = None,
                 mode: TaskMode = "linear", head: HeadName = "linear", lr: float = 1e-3, backbone_lr_factor: float = 0.1,
                 weight_decay: float = 0.0, ignore_index: int | None = None, class_names: list[str] | None = None,
                 image_size: int = 128, augment: bool = True, head_kwargs: dict[str, Any] | None = None,
                 spatial_init: str | None = None, spectral_init: str | None = None) -> None:
        super().__init__(num_classes=num_classes, config=config, weights=weights, mode=mode, head=head, lr=lr,
                         backbone_lr_factor=backbone_lr_factor, weight_decay=weight_decay,
                         ignore_index=ignore_index, class_names=class_names, head_kwargs=head_kwargs,
                         spatial_init=spatial_init, spectral_init=spectral_init)

    def _logits(self, batch: dict[str, Any]) -> Tensor:
        """(B, K, h, w) logits at the label size: with the linear head and an image whose side is a
        multiple of the patch size, the 1x1-conv output is upsampled once, straight to the label
        size (upstream); otherwise the segmenter's own output is resized."""
        img = batch["image"]
        size = tuple(batch["mask"].shape[-2:]) if "mask" in batch else tuple(img.shape[-2:])
        model = self.model
        p = model.backbone.patch_size
        if model.head_name == "linear" and img.shape[-2] % p == 0 and img.shape[-1] % p == 0:
            feats = model.backbone(img, batch["wavelengths"], batch.get("band_mask")).spatial
            logits = model.head(feats)
        else:
            logits = model(img, batch["wavelengths"], batch.get("band_mask"))
        if tuple(logits.shape[-2:]) != size:
            logits = F.interpolate(logits, size=size, mode="bilinear", align_corners=False)
        return logits


def build_task(kind: str, num_classes: int, **kwargs: Any) -> GeoBenchClassificationTask | GeoBenchSegmentationTask:
    """The task for a GEO-Bench task kind (``"classification"``, ``"multilabel"``, ``"segmentation"``)."""
    if kind == "segmentation":
        return GeoBenchSegmentationTask(num_classes, **kwargs)
    for key in ("head", "head_kwargs", "ignore_index"):
        kwargs.pop(key, None)
    return GeoBenchClassificationTask(num_classes, multilabel=kind == "multilabel", **kwargs)


def monitor_metric(kind: str) -> str:
    """The validation metric used for model selection (maximised), as upstream: accuracy,
    micro average precision for multi-label, upstream's mIoU for segmentation."""
    return {"classification": "val_Accuracy", "multilabel": "val_MicroAP", "segmentation": "val_mIoU"}[kind]
