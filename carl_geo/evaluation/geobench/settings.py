"""What a GEO-Bench evaluation runs and how: one frozen settings object, :class:`GeoBenchSettings`.

Every value is checked once, when the settings are made (a bad value raises
:class:`~carl_geo.errors.CarlGeoError` before any file is read); :meth:`GeoBenchSettings.validate` checks
the files (checkpoint, encoder weights) when the run starts. ``carl-geo geobench`` generates its options
from the fields (:func:`~carl_geo.settings_options.add_options`, ``from_options``), as ``carl-geo predict``
does from :class:`~carl_geo.inference.PredictSettings`.

This module imports neither torch nor numpy (the command line builds its parser from it).
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from carl_geo.datasets.geobench.options import BAND_ORDERS, NORMALIZATIONS, BandOrder, Normalization
from carl_geo.errors import CarlGeoError, check_choice
from carl_geo.evaluation.geobench.options import AUTO, MODES, RANDOM, Mode
from carl_geo.models.names import CONFIG_NAMES, HEAD_NAMES, ConfigName, HeadName
from carl_geo.settings_options import option_meta

#: Settings stored in ``OUT/settings.json``; a resumed evaluation must use the same values.
SIGNATURE_FIELDS = ("checkpoint", "config", "epochs", "batch_size", "lr", "weight_decay", "backbone_lr_factor",
                    "image_size", "normalization", "band_order", "head", "head_width", "max_samples", "val_every")


def parse_task_list(value: str) -> list[str]:
    """``--tasks a,b`` -> ``["a", "b"]``."""
    names = [v.strip() for v in value.split(",") if v.strip()]
    if not names:
        raise argparse.ArgumentTypeError("--tasks needs task names separated by commas (or 'all')")
    return names


def parse_devices(value: str) -> int | str:
    """``--devices 2`` -> 2; anything else (``auto``, ``0,1``) as given."""
    return int(value) if value.strip().lstrip("-").isdigit() else value


def _default_workers() -> int:
    return min(4, os.cpu_count() or 1)


@dataclass(frozen=True)
class GeoBenchSettings:
    """What to evaluate and how (defaults: upstream's linear probe).

    Attributes:
        root: GEO-Bench folder (``ROOT/classification_v1.0/m-eurosat/...``, a benchmark folder, or
            a folder of task folders).
        checkpoint: weights file (CARL-SSL ``.ckpt``, carl_geo ``.pt``/``.safetensors``, ...) or
            ``"random"``: no SSL checkpoint, the backbone starts from ``spatial_init`` /
            ``spectral_init`` (by default upstream's no-SSL baseline with the published config).
        out: output folder.
        tasks: task names; ``None`` = the five tasks with a published CARL number; ``["all"]`` = every task found.
        mode: ``"linear"`` (frozen backbone + linear head), ``"finetune"`` (backbone at
            ``lr * backbone_lr_factor``), ``"scratch"`` (everything trained at ``lr``) or
            ``"knn"`` (weighted k-NN on frozen features; classification only, seed-independent).
        seeds: number of seeds (``first_seed``, ``first_seed + 1``, ...).
        config: ``"published"`` (72 M parameters; with a checkpoint, the config stored in it wins)
            or ``"tiny"``.
        epochs, batch_size, lr, weight_decay, backbone_lr_factor: optimisation (upstream 50, 16,
            1e-3, Adam = AdamW without weight decay).
        image_size: images are resized to this side (upstream 128; 0 = native size).
        normalization: ``"image"`` (upstream scalar mean/std) or ``"band"`` (GEO-Bench statistics).
        band_order: ``"stored"`` (upstream) or ``"corrected"`` (m-eurosat / m-brick-kiln fix).
        head: segmentation head, ``"linear"`` (1x1 conv, upstream), ``"progressive"`` or ``"upernet"``.
        head_width: channels of the progressive / UperNet head (None: the head's default).
        spatial_init, spectral_init: initial encoder weights with ``checkpoint="random"`` (ignored
            otherwise): ``"random"``, ``"timm"`` (upstream: timm's EVA-02 trunk, DINOv2 blocks in the
            spectral encoder), a local timm weights file, or ``"auto"``: ``"timm"`` for the published
            config (upstream's "no SSL checkpoint" baseline), ``"random"`` for the tiny one.
        partition: ``"default"`` or a reduced-train partition (``"0.01x_train"``, ``"0.10x"``).
        max_samples: use only the first N samples of each split (smoke tests).
        val_every: validate every N epochs (upstream 5; capped at ``epochs``).
        num_workers, accelerator, devices, strategy, precision: loader and Lightning Trainer
            settings; ``precision=None`` = ``"bf16-mixed"`` on a GPU, ``"32-true"`` on CPU.
        progress: progress bars.

    ``root``, ``checkpoint`` and ``out`` have no default worth running (None); :meth:`validate`
    (called by :func:`~carl_geo.evaluation.geobench.run_geobench`) asks for them.

    Raises:
        CarlGeoError: a value out of range or not one of its choices (when the settings are made).
    """

    root: Path | None = None
    checkpoint: str | None = None
    out: Path | None = None
    tasks: list[str] | None = field(default=None, metadata=option_meta(
        None, "comma-separated task names, or 'all' (default: the tasks with a published CARL number: "
        "m-bigearthnet, m-eurosat, m-forestnet, m-SA-crop-type, m-cashew-plantation)", parse=parse_task_list))
    mode: Mode = field(default="linear", metadata=option_meta(
        None, "linear: frozen backbone + linear head (paper); finetune; scratch; knn (classification)"))
    seeds: int = field(default=3, metadata=option_meta(
        None, "number of seeds (mean and std are reported; upstream ran once, unseeded)", parse=int))
    first_seed: int = field(default=0, metadata=option_meta(None, "first seed", parse=int))
    config: ConfigName = field(default="published", metadata=option_meta(
        None, "backbone size; with a checkpoint the config stored in it is used unless 'tiny' is forced"))
    epochs: int = field(default=50, metadata=option_meta(None, "training epochs per run", parse=int))
    batch_size: int = field(default=16, metadata=option_meta(None, "samples per batch", parse=int))
    lr: float = field(default=1e-3, metadata=option_meta(None, "learning rate", parse=float))
    weight_decay: float = field(default=0.0, metadata=option_meta(
        None, "AdamW weight decay (0 = upstream's Adam)", parse=float))
    backbone_lr_factor: float = field(default=0.1, metadata=option_meta(
        None, "backbone lr = lr x this (finetune)", parse=float))
    image_size: int = field(default=128, metadata=option_meta(
        None, "resize images to this side (upstream 128; 0 = native)", parse=int))
    normalization: Normalization = field(default="image", metadata=option_meta(
        None, "image: one mean/std per image (upstream); band: GEO-Bench per-band statistics"))
    band_order: BandOrder = field(default="stored", metadata=option_meta(
        None, "corrected: fix the wrong stored wavelengths of m-eurosat/m-brick-kiln (not comparable to the paper)"))
    head: HeadName = field(default="linear", metadata=option_meta(
        None, "segmentation head: linear (1x1 conv, upstream's probe), progressive, or upernet (UperNet on a simple "
        "feature pyramid; not upstream's ViT-Adapter + UperNet)"))
    head_width: int | None = field(default=None, metadata=option_meta(
        None, "channels of the progressive / upernet head (default: 64 / 256)", parse=int))
    spatial_init: str = field(default=AUTO, metadata=option_meta(
        None, "with --checkpoint random: spatial trunk weights: 'timm' (EVA-02 MIM in22k, as upstream; downloaded "
        "once by timm), a local timm weights file, 'random', or 'auto' (timm for the published config, random for "
        "tiny)"))
    spectral_init: str = field(default=AUTO, metadata=option_meta(
        None, "with --checkpoint random: spectral encoder weights: 'timm' (first blocks of DINOv2, as upstream), a "
        "local timm DINOv2 weights file, 'random', or 'auto' (as --spatial-init)"))
    partition: str = field(default="default", metadata=option_meta(
        None, "'default' or a reduced-train partition, e.g. 0.01x_train"))
    max_samples: int | None = field(default=None, metadata=option_meta(
        None, "use only the first N samples per split (smoke test)", parse=int))
    val_every: int = field(default=5, metadata=option_meta(
        None, "validate (and select the model) every N epochs", parse=int))
    num_workers: int = field(default_factory=_default_workers, metadata=option_meta(
        None, "data loader processes", parse=int))
    accelerator: str = field(default="auto", metadata=option_meta(None, "Lightning accelerator (auto, cpu, gpu)"))
    devices: int | str = field(default=1, metadata=option_meta(
        None, "devices per run; >1 trains each run with Lightning's DDP launch", parse=parse_devices))
    strategy: str = field(default="auto", metadata=option_meta(None, "Lightning strategy (e.g. ddp)"))
    precision: str | None = field(default=None, metadata=option_meta(
        None, "Lightning precision (default: bf16-mixed on GPU, 32-true on CPU)"))
    progress: bool = True

    def __post_init__(self) -> None:
        for name in ("root", "out"):
            if getattr(self, name) is not None:
                object.__setattr__(self, name, Path(getattr(self, name)))
        check_choice("mode", self.mode, MODES)
        check_choice("config", self.config, CONFIG_NAMES)
        check_choice("normalization", self.normalization, NORMALIZATIONS)
        check_choice("band_order", self.band_order, BAND_ORDERS)
        check_choice("head", self.head, HEAD_NAMES)
        if self.head_width is not None and (self.head_width < 1 or self.head == "linear"):
            raise CarlGeoError(f"head_width must be >= 1 and needs a progressive or upernet head, got "
                               f"{self.head_width} with head {self.head!r}")
        for name in ("seeds", "epochs", "batch_size", "val_every"):
            if int(getattr(self, name)) < 1:
                raise CarlGeoError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.image_size < 0 or self.num_workers < 0 or (self.max_samples is not None and self.max_samples < 1):
            raise CarlGeoError("image_size and num_workers must be >= 0, max_samples >= 1")
        if self.lr <= 0:
            raise CarlGeoError(f"lr must be > 0, got {self.lr}")

    def validate(self) -> None:
        """Check what a run needs besides the values (checked when the settings were made): ``root``, ``checkpoint``
        and ``out`` are given, the checkpoint and encoder weight files exist.

        Raises:
            CarlGeoError: a missing setting.
            FileNotFoundError: a weights file that does not exist.
        """
        missing = [name for name in ("root", "checkpoint", "out") if getattr(self, name) is None]
        if missing:
            raise CarlGeoError(f"GEO-Bench settings need {', '.join(missing)}")
        if self.checkpoint != RANDOM and not Path(self.checkpoint).is_file():
            raise FileNotFoundError(f"checkpoint not found: {self.checkpoint} (give a weights file or 'random')")
        self.encoder_inits()  # encoder weight files exist

    @property
    def weights(self) -> str | None:
        return None if self.checkpoint in (RANDOM, None) else str(Path(self.checkpoint).resolve())

    def encoder_inits(self) -> tuple[str | None, str | None]:
        """(spatial, spectral) initial weights of a run without SSL checkpoint, resolved: ``None``
        (random), ``"timm"`` or an absolute file path; (None, None) with a checkpoint.

        Raises:
            FileNotFoundError: a weights file that does not exist.
        """
        from carl_geo.models.timm_weights import normalize_source

        if self.weights is not None:
            return None, None
        default = "timm" if self.config == "published" else RANDOM
        return tuple(normalize_source(default if v == AUTO else v)  # type: ignore[return-value]
                     for v in (self.spatial_init, self.spectral_init))

    def head_kwargs(self) -> dict[str, Any] | None:
        return None if self.head_width is None else {"width": int(self.head_width)}

    def seed_list(self) -> list[int]:
        """Seeds to run (k-NN has no randomness: one run)."""
        n = 1 if self.mode == "knn" else self.seeds
        return list(range(self.first_seed, self.first_seed + n))

    def signature(self) -> dict[str, Any]:
        """The settings that change the numbers (stored in ``OUT/settings.json``)."""
        sig = {k: getattr(self, k) for k in SIGNATURE_FIELDS}
        spatial, spectral = self.encoder_inits()
        sig["spatial_init"], sig["spectral_init"] = spatial, spectral
        if self.weights is not None:
            sig["checkpoint"] = self.weights
            sig["checkpoint_bytes"] = Path(self.weights).stat().st_size
        return sig

    def resolved_precision(self) -> str:
        if self.precision:
            return self.precision
        from carl_geo.devices import uses_cuda

        return "bf16-mixed" if uses_cuda(self.accelerator) else "32-true"
