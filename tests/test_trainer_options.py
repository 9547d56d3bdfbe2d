"""Trainer options from upstream: per-encoder freeze flags, and the micro average precision that upstream
scores m-bigearthnet with (checked against a hand computation)."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader

from carl_geo.evaluation.geobench.knn import _metrics as knn_metrics
from carl_geo.evaluation.geobench.results import PRIMARY_METRIC
from carl_geo.trainers.geobench import GeoBenchClassificationTask, monitor_metric
from carl_geo.trainers import CARLClassificationTask, CARLSegmentationTask
from test_trainers import _segmentation_batches

pytestmark = pytest.mark.usefixtures("one_thread")

# 3 images x 2 labels. Ranked over all 6 (image, label) pairs: 0.9+ 0.7+ 0.6- 0.4+ 0.2- 0.1+; precision at
# each positive: 1/1, 2/2, 3/4, 4/6 -> micro AP = (1 + 1 + 0.75 + 2/3) / 4
SCORES = torch.tensor([[0.9, 0.2], [0.6, 0.7], [0.1, 0.4]])
TARGETS = torch.tensor([[1, 0], [0, 1], [1, 1]])
HAND_MICRO_AP = (1 + 1 + 0.75 + 2 / 3) / 4


def _trainer(tmp_path, **kw) -> L.Trainer:
    return L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
                     enable_checkpointing=False, default_root_dir=tmp_path, **kw)


def test_micro_average_precision_matches_a_hand_computation(tmp_path):
    task = GeoBenchClassificationTask(num_classes=2, multilabel=True, config="tiny", image_size=0, augment=False)
    task._logits = lambda batch: torch.logit(SCORES)  # the metric path of a real validation epoch
    batch = {"image": torch.zeros(3, 6, 8, 8), "wavelengths": torch.zeros(3, 6), "label": TARGETS}
    (out,) = _trainer(tmp_path).validate(task, DataLoader([batch], batch_size=None), verbose=False)
    assert out["val_MicroAP"] == pytest.approx(HAND_MICRO_AP, abs=1e-6)
    assert out["val_F1"] == pytest.approx(2 * 2 / (2 * 2 + 1 + 2), abs=1e-6)  # threshold 0.5: TP 2, FP 1, FN 2
    assert monitor_metric("multilabel") == "val_MicroAP" and PRIMARY_METRIC["multilabel"] == "MicroAP"
    assert knn_metrics(SCORES, TARGETS, 2, multilabel=True)["MicroAP"] == pytest.approx(HAND_MICRO_AP, abs=1e-6)


def _fit_one_epoch(task, tmp_path) -> None:
    _trainer(tmp_path, max_epochs=1).fit(task, DataLoader(_segmentation_batches(2, 0), batch_size=None))


@pytest.mark.parametrize("frozen", ["spectral", "spatial"])
def test_per_encoder_freeze_flags(frozen, tmp_path):
    L.seed_everything(0)
    task = CARLSegmentationTask(num_classes=2, config="tiny", mode="finetune", lr=1e-2,
                                freeze_spectral_encoder=frozen == "spectral",
                                freeze_spatial_encoder=frozen == "spatial")
    backbone = task.model.backbone
    still = backbone.spectral_tf if frozen == "spectral" else backbone.spatial_encoder
    moving = backbone.spatial_encoder if frozen == "spectral" else backbone.spectral_tf
    assert not any(p.requires_grad for p in still.parameters())
    trainable = {id(p) for g in task.configure_optimizers()["optimizer"].param_groups for p in g["params"]}
    assert not any(id(p) in trainable for p in still.parameters())
    assert all(id(p) in trainable for p in backbone.embedder.parameters())  # as upstream: embedder stays trainable
    before = {k: v.clone() for k, v in backbone.state_dict().items()}
    _fit_one_epoch(task, tmp_path)
    after = backbone.state_dict()
    prefix = "spectral_tf." if frozen == "spectral" else "spatial_encoder."
    other = "spatial_encoder.net.blocks." if frozen == "spectral" else "spectral_tf.blocks."
    assert all(torch.equal(before[k], after[k]) for k in before if k.startswith(prefix))
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith(other))
    assert not torch.equal(before["linear_connector.weight"], after["linear_connector.weight"])
    assert not any(p.requires_grad for p in still.parameters()) and any(p.requires_grad for p in moving.parameters())


def test_classification_task_has_the_flags_too():
    task = CARLClassificationTask(num_classes=3, config="tiny", mode="scratch", freeze_spatial_encoder=True)
    assert not any(p.requires_grad for p in task.model.backbone.spatial_encoder.parameters())
    assert all(p.requires_grad for p in task.model.backbone.spectral_tf.blocks.parameters())
