"""Train a CARL land-cover classifier from an analyst's polygons on one raster.

:func:`train_from_polygons` reads the raster window around the polygons, burns the polygons into a
class mask, holds out whole polygons (or spatial blocks) for validation, trains a
:class:`~carl_geo.models.CARLSegmenter` on class-balanced, flipped/rotated chips, scores it on the
held-out pixels and writes a segmentation model bundle that :func:`carl_geo.inference.predict_raster`
loads with no extra arguments. Every input error is raised (ValueError / FileNotFoundError) before
training starts, and nothing is written then.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import torch
import torch.nn.functional as F
from rasterio.windows import Window

from carl_geo.datasets.vector_labels import (
    IGNORE_INDEX,
    LabelRaster,
    check_label_pixels,
    class_codes,
    polygons_on_grid,
    rasterize_labels,
    read_label_vector,
)
from carl_geo.errors import Cancelled
from carl_geo.io.band_metadata import open_raster, resolve_wavelengths
from carl_geo.models import CARL, CARLSegmenter, ModelBundle, get_config, load_bundle, make_bundle, save_bundle
from carl_geo.models.segmentation import HEADS
from carl_geo.training.chips import ChipSampler, augment, holdout_split, labels_window, tiles
from carl_geo.training.metrics import confusion_matrix, segmentation_report
from carl_geo.training.outputs import check_training_paths, confusion_png_path
from carl_geo.training.report import confusion_png

#: Chips drawn per epoch (an epoch is a fixed number of chips, not a pass over all pixels).
CHIPS_PER_EPOCH = 64
#: Default epochs when ``epochs=None``: end-to-end training of a tiny model needs more steps
#: than a head on a frozen backbone.
DEFAULT_EPOCHS = {"end_to_end": 15, "frozen": 10}
#: Head settings per backbone config (a narrow decoder keeps the tiny model fast on a CPU).
HEAD_KWARGS = {"tiny": {"progressive": {"width": 32}}, "published": {}}
#: Spatial-encoder settings of a backbone trained from scratch here (stored in the bundle's config).
#: The EVA02 trunk's absolute position embedding and its RoPE are both rescaled to the token grid of
#: each input, so a model trained on small chips would see different positional codes on the
#: predictor's larger tiles; without them the prediction does not depend on the tile size.
SCRATCH_SPATIAL_KWARGS: dict[str, Any] = {"use_abs_pos_emb": False, "use_rot_pos_emb": False}
#: Patch size of a backbone trained from scratch, per config (None: the config's own). Patch 4
#: instead of 8 halves the size of the smallest mapped unit; on the NC Landsat scene (28.5 m)
#: it raised OA against the reference map from ~0.48 to ~0.62 at about 3x the training cost.
SCRATCH_PATCH_SIZE: dict[str, int | None] = {"tiny": 4, "published": None}
#: Weight the cross-entropy by inverse square-root class frequency on top of the class-balanced
#: chips. Off: with both, rare classes (a few tiny polygons) were over-predicted.
CLASS_WEIGHTS = False
#: Brightness/contrast jitter of the normalised chips (see :func:`~carl_geo.training.chips.augment`).
INTENSITY_JITTER = 0.0
#: Fraction of the final steps whose weights are averaged (stochastic weight averaging; 0: off).
WEIGHT_AVERAGING = 0.0
#: Chip sides are drawn from ``chip_size * s`` for s in CHIP_SCALES (multi-scale training).
CHIP_SCALES: tuple[float, ...] = (1.0,)


#: ``progress`` returned False; no file was written (carl_geo's one :class:`~carl_geo.errors.Cancelled`).
TrainingCancelled = Cancelled


@dataclass
class TrainingResult:
    """Outcome of :func:`train_from_polygons`.

    Attributes:
        model_path: the bundle file written.
        bundle: the trained model with its metadata (model in eval mode, on CPU).
        report: overall_accuracy, per_class_iou {name: iou}, mean_iou, confusion_matrix
            (rows reference, columns prediction), class_names, n_train_pixels, n_val_pixels,
            seconds, evaluated_on ("validation" or "training" when nothing could be held out).
        confusion_png: confusion-matrix figure next to the model, or None.
    """

    model_path: Path
    bundle: ModelBundle
    report: dict[str, Any]
    confusion_png: Path | None


def _pick_device(device: str) -> torch.device:
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if device not in ("cpu", "cuda", "mps") and not device.startswith("cuda:"):
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'mps', got {device!r}")
    return torch.device(device)


def _check_args(raster: Path, out: Path, config: str, head: str, epochs: int | None, chip_size: int,
                batch_size: int, val_fraction: float, weights: Path | None) -> None:
    if not raster.exists():
        raise FileNotFoundError(f"raster not found: {raster}")
    if weights is not None and not weights.exists():
        raise FileNotFoundError(f"weights file not found: {weights}")
    if config not in ("tiny", "published"):
        raise ValueError(f"config must be 'tiny' or 'published', got {config!r}")
    if head not in HEADS:
        raise ValueError(f"head must be one of {sorted(HEADS)}, got {head!r}")
    if epochs is not None and (int(epochs) != epochs or epochs < 1):
        raise ValueError(f"epochs must be a positive integer, got {epochs!r}")
    if chip_size < 16 or chip_size % 8:
        raise ValueError(f"chip_size must be a multiple of 8 and at least 16 pixels, got {chip_size}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if not 0 <= val_fraction < 1:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    if out.exists() and out.is_dir():
        raise ValueError(f"out must be a file path, {out} is a folder")


def resolve_raster_bands(src: rasterio.DatasetReader, *, wavelengths: Sequence[float] | None,
                         sensor: str | None, bands: Sequence[int | str] | None
                         ) -> tuple[list[int], list[float], list[str] | None, str | None]:
    """1-based band indexes to read, their wavelengths (µm), band names and sensor preset name,
    with the predictor's resolution rules (explicit list > sensor preset > file metadata)."""
    res = resolve_wavelengths(src, wavelengths=wavelengths, sensor=sensor, bands=bands)
    return list(res.band_indexes), [float(w) for w in res.wavelengths], \
        (list(res.band_names) if res.band_names else None), res.sensor


def scene_statistics(src: rasterio.DatasetReader, indexes: Sequence[int], max_side: int = 1024) -> tuple[float, float]:
    """One scalar mean and std (upstream normalisation) over the valid pixels of all selected
    bands, from a decimated read (at most ``max_side`` pixels per side)."""
    scale = max(1.0, max(src.height, src.width) / max_side)
    shape = (len(indexes), max(1, round(src.height / scale)), max(1, round(src.width / scale)))
    data = src.read(list(indexes), out_shape=shape, masked=True).astype(np.float64)
    valid = ~np.ma.getmaskarray(data).any(0) & np.isfinite(data.filled(np.nan)).all(0)
    vals = data.filled(np.nan)[:, valid]
    if vals.size == 0:
        raise ValueError(f"{src.name} has no valid pixel (all nodata) in bands {list(indexes)}")
    return float(vals.mean()), float(vals.std())


def read_window(src: rasterio.DatasetReader, indexes: Sequence[int], window: Window) -> tuple[np.ndarray, np.ndarray]:
    """(C, H, W) float32 image (nodata -> 0) and (H, W) bool valid mask (all bands valid, finite)."""
    data = src.read(list(indexes), window=window, masked=True)
    arr = np.asarray(data.filled(0), dtype=np.float32)
    valid = ~np.ma.getmaskarray(data).any(0) & np.isfinite(arr).all(0)
    arr[:, ~valid] = 0
    return arr, valid


def _pad_to(arr: np.ndarray, size: int, value: float) -> np.ndarray:
    ph, pw = max(0, size - arr.shape[-2]), max(0, size - arr.shape[-1])
    if not (ph or pw):
        return arr
    pad = [(0, 0)] * (arr.ndim - 2) + [(0, ph), (0, pw)]
    return np.pad(arr, pad, constant_values=value)


@torch.no_grad()
def predict_array(model: torch.nn.Module, img: torch.Tensor, wavelengths: torch.Tensor, *, tile: int = 256,
                  overlap: int = 32, batch_size: int = 4, needed: np.ndarray | None = None) -> np.ndarray:
    """Argmax classes (H, W) int64 of a normalised image (C, H, W) by overlapping tiles (logits of
    overlapping tiles averaged). ``needed`` (H, W) bool skips tiles without a needed pixel
    (those pixels stay -1)."""
    h, w = img.shape[-2:]
    tile = min(tile, max(h, w))
    dev = next(model.parameters()).device
    img_p = torch.from_numpy(_pad_to(img.cpu().numpy(), tile, 0.0))
    hp, wp = img_p.shape[-2:]
    corners = [(r, cc) for r, cc in tiles((hp, wp), tile, overlap)
               if needed is None or needed[r:r + tile, cc:cc + tile].any()]
    logits = None
    weight = torch.zeros(hp, wp)
    for i in range(0, len(corners), batch_size):
        part = corners[i:i + batch_size]
        x = torch.stack([img_p[:, r:r + tile, cc:cc + tile] for r, cc in part]).to(dev)
        out = model(x, wavelengths.to(dev)).float().cpu()
        if logits is None:
            logits = torch.zeros(out.shape[1], hp, wp)
        for (r, cc), o in zip(part, out):
            logits[:, r:r + tile, cc:cc + tile] += o
            weight[r:r + tile, cc:cc + tile] += 1
    pred = np.full((hp, wp), -1, dtype=np.int64)
    if logits is not None:
        covered = (weight > 0).numpy()
        pred[covered] = logits.argmax(0).numpy()[covered]
    return pred[:h, :w]


def _class_weights(train: np.ndarray, k: int) -> torch.Tensor:
    """Inverse square-root frequency weights (mean 1) for the cross-entropy."""
    counts = np.bincount(train[train != IGNORE_INDEX], minlength=k).astype(np.float64)
    w = 1.0 / np.sqrt(np.maximum(counts, 1))
    w[counts == 0] = 0
    return torch.tensor(w / w[counts > 0].mean(), dtype=torch.float32)


def _build_model(k: int, config: str, head: str, weights: Path | None) -> tuple[CARLSegmenter, bool]:
    """A fresh segmenter, or a frozen pretrained backbone + new head; returns (model, frozen)."""
    head_kwargs = dict(HEAD_KWARGS.get(config, {}).get(head, {}))
    if weights is None:
        cfg = get_config(config)
        cfg.spatial.model_kwargs.update(SCRATCH_SPATIAL_KWARGS)
        patch = SCRATCH_PATCH_SIZE.get(config)
        if patch:
            cfg.patch_size = patch
            if head == "progressive":
                head_kwargs.setdefault("n_up", max(0, round(math.log2(patch))))
        return CARLSegmenter(CARL(cfg), k, head, head_kwargs), False
    backbone = load_bundle(weights).backbone
    for p in backbone.parameters():
        p.requires_grad_(False)
    return CARLSegmenter(backbone, k, head, head_kwargs), True


def train_from_polygons(
    raster: str | os.PathLike,
    labels: str | os.PathLike,
    label_field: str,
    out: str | os.PathLike,
    *,
    wavelengths: Sequence[float] | None = None,
    sensor: str | None = None,
    bands: Sequence[int | str] | None = None,
    weights: str | os.PathLike | None = None,
    config: str = "tiny",
    head: str = "progressive",
    epochs: int | None = None,
    chip_size: int = 64,
    batch_size: int = 8,
    val_fraction: float = 0.25,
    seed: int = 0,
    device: str = "auto",
    progress: Callable[[int, int], bool | None] | None = None,
    log: Callable[[str], None] | None = None,
    lr: float = 1e-3,
) -> TrainingResult:
    """Train a land-cover segmenter from polygons drawn on a raster.

    Args:
        raster: any raster rasterio opens, any band count; must have a CRS.
        labels: vector file (any OGR format, any CRS) with one class per feature.
        label_field: column holding the class (text or integers).
        out: model bundle to write (:func:`carl_geo.save_bundle`); a confusion-matrix PNG
            ``<stem>_confusion.png`` is written beside it.
        wavelengths / sensor / bands: band selection and wavelengths (µm), resolved exactly like
            :func:`carl_geo.inference.predict_raster` does.
        weights: backbone weights file: the backbone is frozen and only the head is trained;
            None trains the ``config`` model end to end from scratch.
        config: ``"tiny"`` (fast on a CPU) or ``"published"`` architecture.
        head: ``"progressive"`` (sharper boundaries) or ``"linear"``.
        epochs: number of epochs of :data:`CHIPS_PER_EPOCH` chips (default
            :data:`DEFAULT_EPOCHS`).
        chip_size: chip side in pixels (multiple of 8).
        batch_size: chips per optimisation step.
        val_fraction: share of each class's labelled pixels held out as whole polygons (or
            spatial blocks of a class with a single polygon) for the validation report.
        seed: seeds the split, the chip sampler and the model initialisation.
        device: ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"mps"``.
        progress: ``progress(done_steps, total_steps)``; returning False cancels
            (:class:`TrainingCancelled`, nothing written).
        log: receives human-readable progress lines.
        lr: peak learning rate of AdamW (one-cycle schedule).

    Returns:
        :class:`TrainingResult`.

    Raises:
        FileNotFoundError: raster, label or weights file missing.
        ValueError: label field missing or not categorical, polygons outside the raster / no
            overlap after reprojection, only one class, raster without CRS, a class with fewer
            than a few valid pixels, wavelengths that do not match the bands, bad settings.
    """
    t0 = time.perf_counter()
    say = log or (lambda _msg: None)
    raster, labels, out = Path(raster), Path(labels), Path(out)
    weights = Path(weights) if weights is not None else None
    _check_args(raster, out, config, head, epochs, chip_size, batch_size, val_fraction, weights)
    check_training_paths(raster, labels, out, weights)  # never write over the raster, labels or weights

    # ---- everything a user can get wrong is checked here, before any training -------------
    gdf = read_label_vector(labels, label_field)
    with open_raster(raster) as src:
        if src.crs is None:
            raise ValueError(f"{raster.name} has no coordinate reference system; assign one "
                             "(e.g. gdal_edit.py -a_srs EPSG:xxxx) so the polygons can be placed on it")
        indexes, wls, band_names, sensor_name = resolve_raster_bands(src, wavelengths=wavelengths, sensor=sensor,
                                                                     bands=bands)
        geoms, inside = polygons_on_grid(gdf, src.crs, tuple(src.bounds))
        window = labels_window(tuple(geoms[inside].total_bounds), src.transform, (src.height, src.width), chip_size)
        win_transform = src.window_transform(window)
        lab: LabelRaster = rasterize_labels(gdf, label_field, shape=(int(window.height), int(window.width)),
                                            transform=win_transform, crs=src.crs)
        img_np, valid = read_window(src, indexes, window)
        check_label_pixels(lab, valid)
        mean, std = scene_statistics(src, indexes)
        raster_crs = src.crs.to_string()

    k = len(lab.class_names)
    mask = np.where(valid, lab.mask, IGNORE_INDEX)
    split = holdout_split(mask, lab.polygon_ids, lab.class_names, val_fraction=val_fraction,
                          block=max(8, chip_size // 4), seed=seed)
    n_train, n_val = int((split.train != IGNORE_INDEX).sum()), int((split.val != IGNORE_INDEX).sum())
    say(f"{k} classes {lab.class_names}; {n_train} training / {n_val} validation pixels "
        f"(hold-out: {', '.join(f'{n}: {h}' for n, h in split.how.items())})")
    if lab.n_polygons_outside:
        say(f"{lab.n_polygons_outside} polygon(s) lie outside the raster and were ignored")

    # ---- model and data ---------------------------------------------------------------------
    dev = _pick_device(device)
    torch.manual_seed(seed)
    model, frozen = _build_model(k, config, head, weights)
    model.to(dev)
    n_epochs = int(epochs or DEFAULT_EPOCHS["frozen" if frozen else "end_to_end"])
    steps_per_epoch = max(1, math.ceil(CHIPS_PER_EPOCH / batch_size))
    total = n_epochs * steps_per_epoch

    norm = (img_np - mean) / (std + 1e-6)
    norm[:, ~valid] = 0.0
    sizes = sorted({max(16, round(chip_size * s / 8) * 8) for s in CHIP_SCALES})
    img_t = torch.from_numpy(_pad_to(norm.astype(np.float32), max(sizes), 0.0))
    train_t = torch.from_numpy(_pad_to(split.train, max(sizes), IGNORE_INDEX))
    wl_t = torch.tensor(wls, dtype=torch.float32, device=dev)
    sampler = ChipSampler(train_t.numpy(), chip_size, seed=seed)
    gen = torch.Generator().manual_seed(seed)

    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.05)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=total, pct_start=0.1)
    cw = _class_weights(split.train, k).to(dev) if CLASS_WEIGHTS else None
    say(f"training {'head on a frozen backbone' if frozen else f'{config} CARL end to end'} "
        f"({sum(p.numel() for p in params) / 1e6:.2f} M trainable parameters) on {dev}: "
        f"{n_epochs} epochs x {steps_per_epoch} steps of {batch_size} chips of {chip_size} px")

    # ---- training loop ----------------------------------------------------------------------
    step = 0
    avg_from = total - round(WEIGHT_AVERAGING * total) if WEIGHT_AVERAGING > 0 else None
    avg_state: dict[str, torch.Tensor] = {}
    n_avg = 0
    for epoch in range(n_epochs):
        model.train()
        if frozen:
            model.backbone.eval()
        losses = []
        for _ in range(steps_per_epoch):
            size = sizes[step % len(sizes)]
            corners = sampler.sample(batch_size, size)
            x = torch.stack([img_t[:, r:r + size, c:c + size] for r, c in corners])
            y = torch.stack([train_t[r:r + size, c:c + size] for r, c in corners])
            x, y = augment(x, y, gen, INTENSITY_JITTER)
            logits = model(x.to(dev), wl_t)
            loss = F.cross_entropy(logits, y.to(dev), weight=cw, ignore_index=IGNORE_INDEX)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            losses.append(float(loss.detach()))
            step += 1
            if avg_from is not None and step > avg_from:
                n_avg += 1
                for name, v in model.state_dict().items():
                    if v.is_floating_point():
                        v = v.detach()
                        avg_state[name] = v.clone() if n_avg == 1 else avg_state[name].lerp_(v, 1.0 / n_avg)
            if progress is not None and progress(step, total) is False:
                raise TrainingCancelled(f"training cancelled after {step} of {total} steps; nothing was written")
        say(f"epoch {epoch + 1}/{n_epochs}  loss {np.mean(losses):.4f}")

    if avg_state:
        model.load_state_dict(avg_state, strict=False)
        say(f"averaged the weights of the last {n_avg} steps")

    # ---- validation report --------------------------------------------------------------------
    model.eval()
    evaluated_on = "validation" if n_val else "training"
    ref = split.val if n_val else split.train
    pred = predict_array(model, torch.from_numpy(norm.astype(np.float32)), wl_t, tile=max(256, chip_size),
                         overlap=32, needed=ref != IGNORE_INDEX)
    cm = confusion_matrix(ref, pred, k)
    report = segmentation_report(cm, lab.class_names)
    report.pop("n_pixels")
    report.update(n_train_pixels=n_train, n_val_pixels=n_val, evaluated_on=evaluated_on,
                  seconds=round(time.perf_counter() - t0, 2))

    # ---- write ------------------------------------------------------------------------------
    model.cpu().eval()
    bundle = make_bundle(
        model, class_names=lab.class_names, class_values=class_codes(lab.class_names), wavelengths=wls,
        band_names=band_names, sensor=sensor_name,
        normalization={"mode": "fixed", "mean": mean, "std": std},
        meta={"training": {"raster": str(raster), "labels": str(labels), "label_field": label_field,
                           "raster_crs": raster_crs, "band_indexes": indexes, "config": config, "head": head,
                           "weights": str(weights) if weights else None, "epochs": n_epochs,
                           "chip_size": chip_size, "batch_size": batch_size, "val_fraction": val_fraction,
                           "seed": seed, "holdout": split.how},
              "report": report},
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    save_bundle(bundle, out)
    png = confusion_png(cm, lab.class_names, confusion_png_path(out),
                        title=f"{evaluated_on} confusion matrix (OA {report['overall_accuracy']:.2f}, "
                              f"mIoU {report['mean_iou']:.2f})")
    report["seconds"] = round(time.perf_counter() - t0, 2)
    return TrainingResult(model_path=out, bundle=bundle, report=report, confusion_png=png)
