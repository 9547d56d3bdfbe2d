"""CARL-SSL pre-training as a Lightning module (upstream ``carl/trainer/ssl_trainer.py`` recipe);
``carl_geo.ssl.module`` before issue #19 (that name still imports). Its parts live in :mod:`carl_geo.ssl`.

* student :class:`~carl_geo.ssl.model.CARLSSLModel` (``self.model``: backbone + predictors) and
  teacher :class:`~carl_geo.models.carl.CARL` (``self.teacher``: EMA copy without predictors,
  frozen, always in eval mode); checkpoint ``state_dict`` = ``model.*`` + ``teacher.*``, the
  published layout;
* per batch: kornia crop/flips to ``image_size`` -> spatial (I-JEPA) and spectral (band-block)
  masks -> masked student pass -> teacher targets -> VICReg-style loss (:mod:`carl_geo.ssl.loss`);
* after every optimiser step: teacher <- m * teacher + (1 - m) * student, m rising linearly from
  ``ema[0]`` to ``ema[1]`` over the run's optimiser steps;
* AdamW (upstream lr 1e-4, weight decay 1e-2) with linear warm-up then cosine decay to ``min_lr``,
  per step (``lr_schedule="warmup_cosine"``), or upstream's cosine per epoch without warm-up
  (``"epoch_cosine"``: ``CosineAnnealingLR(T_max=max_epochs, eta_min=min_lr)``);
* validation = k-NN monitor (``val_knn_acc``) when the data module gives [bank, query] loaders.

Mixed precision: run the trainer with ``precision: bf16-mixed`` on GPU (the loss is computed in
float32; the teacher update in the weights' dtype).
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor

from carl_geo.errors import CarlGeoError, check_choice
from carl_geo.models.carl import CARL, check_inputs
from carl_geo.models.checkpoint import (
    FORMAT,
    CheckpointError,
    backbone_state_dict,
    load_backbone_weights,
    read_checkpoint,
)
from carl_geo.models.config import CARLConfig, get_config
from carl_geo.ssl.augment import SSLAugment
from carl_geo.ssl.ema import ema_momentum, ema_update, teacher_pairs, warmup_cosine
from carl_geo.ssl.knn import KNNMonitor, pooled_features
from carl_geo.ssl.loss import SSLLoss
from carl_geo.ssl.masking import SpatialMasking, SpatialMasks, SpectralMasking, SpectralMasks
from carl_geo.ssl.model import CARLSSLModel, student_forward, teacher_targets
from carl_geo.ssl.predictors import PredictorConfig

#: Learning-rate schedules: carl_geo's per-step warm-up + cosine, upstream's per-epoch cosine.
LR_SCHEDULES = ("warmup_cosine", "epoch_cosine")
#: Student sub-trees of the timm trunk that CARL's forward uses; the rest (timm's own patch
#: embedding, final norms, head) stays in the state dict but is frozen (no DDP unused-parameter error).
USED_TRUNK_PREFIXES = ("blocks.", "pos_embed", "cls_token", "reg_token")


def resolve_backbone(backbone: str | dict[str, Any] | CARLConfig) -> CARLConfig:
    """``"tiny"``/``"published"``, an upstream ``model_kwargs`` dict, or a carl_geo config dict."""
    if isinstance(backbone, CARLConfig):
        return backbone
    if isinstance(backbone, str):
        return get_config(backbone)
    if isinstance(backbone, dict):
        if "spec_encoder_kwargs" in backbone or "spat_encoder_kwargs" in backbone:
            return CARLConfig.from_upstream(backbone)
        if "spectral" in backbone and "spatial" in backbone:
            return CARLConfig.from_dict(backbone)
    raise CarlGeoError("backbone must be 'tiny', 'published', an upstream model_kwargs dict (spec_encoder_kwargs, "
                       f"spat_encoder_kwargs, patch_size) or a carl_geo config dict; got {backbone!r}")


def _predictor_config(d: dict[str, Any] | None) -> PredictorConfig:
    d = dict(d or {})
    unknown = set(d) - {f.name for f in fields(PredictorConfig)}
    if unknown:
        raise CarlGeoError(f"unknown predictor setting(s) {sorted(unknown)}; known: "
                           f"{[f.name for f in fields(PredictorConfig)]}")
    return PredictorConfig(**d)


class CARLPretrainTask(L.LightningModule):
    """CARL-SSL pre-training.

    Args:
        backbone: architecture: ``"tiny"``, ``"published"``, or an upstream ``model_kwargs`` dict.
        image_size: side of the square training crops (pixels; multiple of the patch size).
            Upstream: 128 (a 16 x 16 token grid).
        spectral_predictor: upstream ``spec_predictor_kwargs`` (predictor_embed_dim, depth,
            num_heads, mlp_ratio, pos_enc_sigma); default 384 wide, depth 3, 6 heads.
        spatial_predictor: upstream ``spat_predictor_kwargs``; default 384 wide, depth 3, 6 heads.
        spectral_masking: upstream ``spectral_masking_kwargs`` (pred_mask_scale, npred, min_keep).
        spatial_masking: upstream ``spatial_masking_kwargs`` (enc_mask_scale, pred_mask_scale,
            aspect_ratio, nenc, npred, min_keep, allow_overlap).
        loss_coeff: upstream ``loss_coeff`` ({spatial,spectral}_coeff: loss_weight, inv_coeff,
            var_coeff, cov_coeff, var_param).
        ema: teacher momentum at the first and the last optimiser step.
        lr, weight_decay, min_lr: AdamW learning rate / weight decay, final cosine learning rate.
        warmup_steps: optimiser steps of linear warm-up (``warmup_cosine`` only).
        lr_schedule: ``"warmup_cosine"`` (per optimiser step) or ``"epoch_cosine"`` (upstream: cosine
            over ``trainer.max_epochs``, stepped once per epoch, no warm-up).
        crop_scale, flip_p: augmentation (random resized crop area range, flip probability;
            ``crop_scale=(1, 1)`` is upstream's plain resize).
        spatial_init, spectral_init: initial weights of a fresh run: ``None``/``"random"``,
            ``"timm"`` (upstream: timm's EVA-02 trunk and DINOv2 spectral blocks, downloaded once)
            or local timm weights files (see :mod:`carl_geo.models.timm_weights`); ``init_weights``
            overrides them.
        init_weights: optional weights to start from (continued pre-training): a CARL-SSL
            checkpoint (student with predictors + teacher) or any backbone file
            :func:`carl_geo.load_carl` reads (then predictors start fresh).
        init_which: backbone sub-tree of ``init_weights`` to use when it has no predictors.
        knn_k, knn_temperature: k-NN monitor (upstream 3 and 0.1).
        knn_backbone: ``"student"`` (upstream) or ``"teacher"`` features for the k-NN monitor.
        mask_seed: base seed of the masks.
    """

    def __init__(self, backbone: str | dict[str, Any] = "tiny", image_size: int = 128,
                 spectral_predictor: dict[str, Any] | None = None, spatial_predictor: dict[str, Any] | None = None,
                 spectral_masking: dict[str, Any] | None = None, spatial_masking: dict[str, Any] | None = None,
                 loss_coeff: dict[str, Any] | None = None, ema: tuple[float, float] = (0.996, 0.99999),
                 lr: float = 1e-4, weight_decay: float = 1e-2, min_lr: float = 1e-6, warmup_steps: int = 0,
                 crop_scale: tuple[float, float] = (0.8, 1.0), flip_p: float = 0.5, init_weights: str | None = None,
                 init_which: str = "student", knn_k: int = 3, knn_temperature: float = 0.1,
                 knn_backbone: str = "student", mask_seed: int = 0, lr_schedule: str = "warmup_cosine",
                 spatial_init: str | None = None, spectral_init: str | None = None) -> None:
        super().__init__()
        self.save_hyperparameters()
        if len(ema) != 2 or not 0 <= ema[0] <= ema[1] <= 1:
            raise CarlGeoError(f"ema must be [start, end] momenta with 0 <= start <= end <= 1, got {list(ema)}")
        if lr <= 0 or min_lr < 0 or min_lr > lr:
            raise CarlGeoError(f"need 0 <= min_lr <= lr and lr > 0, got lr={lr}, min_lr={min_lr}")
        check_choice("knn_backbone", knn_backbone, ("student", "teacher"))
        check_choice("lr_schedule", lr_schedule, LR_SCHEDULES)
        if lr_schedule == "epoch_cosine" and warmup_steps:
            raise CarlGeoError("lr_schedule 'epoch_cosine' (upstream's) has no warm-up: set warmup_steps to 0")
        self.config = resolve_backbone(backbone)
        self.image_size = image_size
        self.model = CARLSSLModel(self.config, image_size, _predictor_config(spectral_predictor),
                                  _predictor_config(spatial_predictor), spatial_init=spatial_init,
                                  spectral_init=spectral_init)
        for name, p in self.model.spatial_encoder.net.named_parameters():
            if not name.startswith(USED_TRUNK_PREFIXES):
                p.requires_grad_(False)
        self.teacher = CARL(self.config)
        self.teacher.load_state_dict(self.model.backbone_state_dict())
        if init_weights:
            self._load_init_weights(init_weights, init_which)
        self.teacher.requires_grad_(False).eval()

        g = self.model.grid_size
        self.spatial_masking = SpatialMasking((g, g), **dict(spatial_masking or {}))
        self.spectral_masking = SpectralMasking(**dict(spectral_masking or {}))
        self.loss_fn = SSLLoss.from_upstream(loss_coeff)
        self.augment = SSLAugment(image_size, crop_scale=crop_scale, flip_p=flip_p)
        self.knn = KNNMonitor(knn_k, knn_temperature)
        self._pairs: tuple[list[Tensor], list[Tensor]] | None = None
        self._total_steps: int | None = None
        self.pretrain_sensors: list[dict[str, Any]] = []
        #: momentum of the latest teacher update (None before the first)
        self.last_momentum: float | None = None

    # ----------------------------------------------------------------- construction helpers
    @classmethod
    def upstream_kwargs(cls, ssl_config: dict[str, Any]) -> dict[str, Any]:
        """Constructor arguments from an upstream ``config_ssl.yaml`` dict (model_kwargs,
        *_masking_kwargs, loss_coeff, ema, training_kwargs)."""
        mk = dict(ssl_config.get("model_kwargs", {}))
        tk = dict(ssl_config.get("training_kwargs", {}))
        out: dict[str, Any] = {
            "backbone": {k: mk[k] for k in ("patch_size", "spec_encoder_kwargs", "spat_encoder_kwargs") if k in mk},
            "image_size": int(mk.get("image_size", 224)),
            "spectral_predictor": mk.get("spec_predictor_kwargs"),
            "spatial_predictor": {k: v for k, v in (mk.get("spat_predictor_kwargs") or {}).items()},
            "spectral_masking": ssl_config.get("spectral_masking_kwargs"),
            "spatial_masking": ssl_config.get("spatial_masking_kwargs"),
            "loss_coeff": ssl_config.get("loss_coeff"),
        }
        if "ema" in ssl_config:
            out["ema"] = tuple(float(v) for v in ssl_config["ema"])
        for src, dst in (("learning_rate", "lr"), ("weight_decay", "weight_decay"), ("min_lr", "min_lr")):
            if src in tk:
                out[dst] = float(tk[src])
        return out

    @classmethod
    def from_upstream_config(cls, ssl_config: dict[str, Any], **overrides: Any) -> CARLPretrainTask:
        """Build from an upstream SSL config dict (e.g. ``fixtures_tiny.pt['ssl_config']``)."""
        return cls(**{**cls.upstream_kwargs(ssl_config), **overrides})

    def _load_init_weights(self, path: str, which: str) -> None:
        state = read_checkpoint(path)["state_dict"]
        if any(k.startswith("model.spectral_predictor.") for k in state):
            student = {k[len("model."):]: v for k, v in state.items() if k.startswith("model.")}
            load_backbone_weights(self.model, student)
            teacher = {k[len("teacher."):]: v for k, v in state.items() if k.startswith("teacher.")}
            load_backbone_weights(self.teacher, teacher or self.model.backbone_state_dict())
            return
        try:
            weights = backbone_state_dict(state, which)
            load_backbone_weights(self.teacher, weights)
        except CheckpointError as e:
            raise CheckpointError(f"{path}: {e}") from None
        self.model.load_state_dict({**self.model.state_dict(), **weights})

    def train(self, mode: bool = True) -> CARLPretrainTask:
        super().train(mode)
        self.teacher.eval()  # the teacher never trains (no dropout, frozen)
        return self

    # ----------------------------------------------------------------- training
    def total_steps(self) -> int:
        """Optimiser steps of the whole run (EMA and LR schedules)."""
        if self._total_steps is None:
            total = self.trainer.estimated_stepping_batches
            if total is None or total == float("inf"):
                raise CarlGeoError("set trainer.max_steps or trainer.max_epochs: the EMA and learning-rate schedules "
                                   "need the run length")
            self._total_steps = int(total)
        return self._total_steps

    def configure_optimizers(self) -> dict[str, Any]:
        hp = self.hparams
        params = [p for p in self.model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=hp.lr, weight_decay=hp.weight_decay)
        if hp.get("lr_schedule", "warmup_cosine") == "epoch_cosine":
            if self.trainer.max_epochs is None or self.trainer.max_epochs < 1:
                raise CarlGeoError("lr_schedule 'epoch_cosine' needs trainer.max_epochs (the cosine period)")
            cosine = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=int(self.trainer.max_epochs),
                                                                eta_min=hp.min_lr)
            return {"optimizer": optimizer, "lr_scheduler": {"scheduler": cosine, "interval": "epoch"}}
        total, warmup, ratio = self.total_steps(), int(hp.warmup_steps), hp.min_lr / hp.lr

        def factor(step: int) -> float:
            return warmup_cosine(step, total, warmup, ratio)

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def on_fit_start(self) -> None:
        dm = getattr(self.trainer, "datamodule", None)
        if dm is not None and hasattr(dm, "sensor_summary"):
            self.pretrain_sensors = dm.sensor_summary()

    def _seeds(self, batch_idx: int) -> tuple[int, torch.Generator]:
        """(per-batch seed shared by all ranks, per-rank generator)."""
        base = ((self.hparams.mask_seed * 1_000_003 + self.current_epoch) * 1_000_003 + batch_idx) % (2**61)
        return base, torch.Generator().manual_seed((base * 1024 + self.global_rank) % (2**62))

    def _unpack(self, batch: dict[str, Any]) -> tuple[Tensor, Tensor, Tensor | None]:
        img = batch["image"].float()
        band_mask = batch.get("band_mask")
        if band_mask is not None:
            band_mask = band_mask.bool()
            if bool(band_mask.all()):
                band_mask = None
            else:
                counts = band_mask.sum(1)
                if not torch.equal(band_mask, torch.arange(img.shape[1], device=img.device) < counts[:, None]):
                    raise CarlGeoError("padded batches must hold the real bands first (pad_bands_collate layout)")
        wl = check_inputs(img, batch["wavelengths"], band_mask).float()
        return img, wl, band_mask

    def masks(self, batch_size: int, band_counts: int | Tensor, batch_idx: int = 0
              ) -> tuple[SpatialMasks, SpectralMasks, torch.Generator]:
        """Spatial masks, spectral masks (for all B*N token columns; ``band_counts`` is C or the (B,)
        real band counts of a padded batch) and the batch's generator, all on CPU; deterministic in
        (mask_seed, epoch, batch_idx, rank)."""
        seed, gen = self._seeds(batch_idx)
        spatial = self.spatial_masking(batch_size, step=seed, generator=gen)
        n = self.model.grid_size ** 2
        if isinstance(band_counts, Tensor):
            counts = band_counts.cpu().repeat_interleave(n)
            spectral = self.spectral_masking(batch_size * n, counts, generator=gen, truncate=False)
        else:
            spectral = self.spectral_masking(batch_size * n, band_counts, generator=gen)
        return spatial, spectral, gen

    def compute_loss(self, img: Tensor, wl: Tensor, band_mask: Tensor | None, batch_idx: int = 0
                     ) -> dict[str, Tensor]:
        """Loss terms of one batch of already augmented (B, C, S, S) images."""
        b, c = img.shape[:2]
        counts = band_mask.sum(1) if band_mask is not None else c
        spatial, spectral, gen = self.masks(b, counts, batch_idx)
        spatial, spectral = spatial.to(img.device), spectral.to(img.device)
        out = student_forward(self.model, img, wl, spatial, spectral, generator=gen)
        t_spat, t_spec = teacher_targets(self.teacher, img, wl, spatial, spectral, out.spectral_rows, band_mask)
        return self.loss_fn(out.spatial, t_spat, out.spectral, t_spec)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        img, wl, band_mask = self._unpack(batch)
        with torch.autocast(img.device.type, enabled=False):
            img = self.augment(img)
        losses = self.compute_loss(img, wl, band_mask, batch_idx)
        if not torch.isfinite(losses["loss"]):
            raise FloatingPointError(f"CARL-SSL loss is {losses['loss'].item()} at step {self.global_step}; "
                                     "lower the learning rate or check the input normalisation")
        b = img.shape[0]
        self.log("train/loss", losses["loss"], prog_bar=True, batch_size=b)
        self.log_dict({f"train/{k}": v for k, v in losses.items() if k != "loss"}, batch_size=b)
        return losses["loss"]

    def optimizer_step(self, *args: Any, **kwargs: Any) -> None:
        super().optimizer_step(*args, **kwargs)
        self.update_teacher(self.global_step)  # Lightning counts the step after this hook returns

    @torch.no_grad()
    def update_teacher(self, step: int) -> float:
        """EMA update after optimiser step ``step`` (0-based); returns the momentum used."""
        if self._pairs is None:
            self._pairs = teacher_pairs(self.model, self.teacher)
        start, end = self.hparams.ema
        m = ema_momentum(step, self.total_steps(), start, end)
        ema_update(*self._pairs, m)
        if self._trainer is not None:
            self.log("train/ema_momentum", m)
        self.last_momentum = m
        return m

    # ----------------------------------------------------------------- k-NN monitor
    def on_validation_epoch_start(self) -> None:
        self.knn.clear()

    def validation_step(self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0) -> None:
        img = batch["image"].float()
        if img.shape[-2:] != (self.image_size, self.image_size):
            img = F.interpolate(img, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False)
        backbone = self.model if self.hparams.knn_backbone == "student" else self.teacher
        feats = pooled_features(backbone, img, batch["wavelengths"], batch.get("band_mask"))
        if dataloader_idx == 0:
            self.knn.add_to_bank(feats, batch["label"])
        else:
            self.knn.update(feats, batch["label"])

    def on_validation_epoch_end(self) -> None:
        if self.knn.total:
            self.log("val_knn_acc", self.knn.compute(), prog_bar=True)
        self.knn.clear()

    # ----------------------------------------------------------------- checkpoints
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Store plain-type facts so that :func:`carl_geo.load_carl` / :func:`carl_geo.load_bundle`
        (``which="student"|"teacher"``) and ``carl-geo export`` read the checkpoint without further
        arguments: ``format``/``config`` (carl_geo's checkpoint convention) and ``carl_ssl``
        (image size, pre-training sensors and wavelengths)."""
        checkpoint["format"] = FORMAT
        checkpoint["config"] = self.config.to_dict()
        checkpoint["carl_ssl"] = {"config": self.config.to_dict(), "image_size": self.image_size,
                                  "pretrain_sensors": list(self.pretrain_sensors)}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.pretrain_sensors = list(checkpoint.get("carl_ssl", {}).get("pretrain_sensors", []))
        self._pairs = None


__all__ = ["CARLPretrainTask", "USED_TRUNK_PREFIXES", "resolve_backbone"]
