"""Train a CARL land-cover classifier from an analyst's polygons on one raster.

:func:`train_from_polygons` reads the raster window around the polygons, burns the polygons into a
class mask, holds out whole polygons (or spatial blocks) for validation, trains a
:class:`~carl_geo.models.CARLSegmenter` on class-balanced, flipped/rotated chips, scores it on the
held-out pixels and writes a segmentation model bundle that :func:`carl_geo.inference.predict_raster`
loads with no extra arguments. Every input error is raised (ValueError / FileNotFoundError) before
training starts, and nothing is written then. The hold-out report is scored through the inference
engine (:func:`carl_geo.inference.engine.run_array`): the tiles, softmax and cosine blending of
:func:`carl_geo.inference.predict_raster`, so it measures the maps users get.
"""

from __future__ import annotations

import math
import os
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
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
from carl_geo.devices import resolve_device
from carl_geo.errors import Cancelled, CarlGeoError
from carl_geo.inference.engine import run_array
from carl_geo.inference.runner import ModelRunner
from carl_geo.inference.settings import PredictSettings, model_patch_size
from carl_geo.io.band_metadata import open_raster, resolve_wavelengths
from carl_geo.models import CARL, CARLSegmenter, ModelBundle, get_config, load_bundle, make_bundle, save_bundle
from carl_geo.models.config import CONFIGS, SCRATCH_SPATIAL_KWARGS, scratch_variant  # noqa: F401
from carl_geo.models.segmentation import HEADS
from carl_geo.polygon_training.checkpoints import BestCheckpoint, WeightAverage
from carl_geo.polygon_training.chips import ChipSampler, augment, holdout_split, labels_window
from carl_geo.polygon_training.metrics import confusion_matrix, mean_iou, segmentation_report
from carl_geo.models.spectral_binning import apply_bins, bin_matrix, equal_bins, random_bins
from carl_geo.polygon_training.recipe import (AVERAGE_FROM_SHARE, KEEP_CHOICES, MIN_STEP_SHARE, MIN_TRAIN_BANDS,
                                             SceneFacts, TrainingRecipe, plan_recipe)
from carl_geo.polygon_training.outputs import check_training_paths, confusion_png_path
from carl_geo.polygon_training.report import confusion_png
from carl_geo.ssl.ema import cosine_decay
from carl_geo.transforms import normalize, standardize_valid

#: Head settings per backbone config (a narrow decoder keeps the tiny model fast on a CPU).
HEAD_KWARGS = {"tiny": {"progressive": {"width": 32}, "upernet": {"width": 32}}, "published": {}}
HEAD_KWARGS["tiny_polygons"] = HEAD_KWARGS["tiny"]
#: Old ``epochs`` argument: an epoch was 64 chips.
LEGACY_CHIPS_PER_EPOCH = 64


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


def _check_args(raster: Path, out: Path, weights: Path | None, recipe: TrainingRecipe) -> None:
    if not raster.exists():
        raise FileNotFoundError(f"raster not found: {raster}")
    if weights is not None and not weights.exists():
        raise FileNotFoundError(f"weights file not found: {weights}")
    if recipe.config not in CONFIGS:
        raise CarlGeoError(f"config must be one of {sorted(CONFIGS)}, got {recipe.config!r}")
    if recipe.head not in HEADS:
        raise CarlGeoError(f"head must be one of {sorted(HEADS)}, got {recipe.head!r}")
    for name in ("max_steps", "batch_size", "patch_size", "val_every"):
        v = getattr(recipe, name)
        if v is not None and (isinstance(v, bool) or int(v) != v or v < 1):
            raise CarlGeoError(f"{name} must be a positive integer, got {v!r}")
    if recipe.chip_size is not None and (recipe.chip_size < 16 or recipe.chip_size % 8):
        raise CarlGeoError(f"chip_size must be a multiple of 8 and at least 16 pixels, got {recipe.chip_size}")
    if recipe.keep not in KEEP_CHOICES:
        raise CarlGeoError(f"keep must be one of {', '.join(KEEP_CHOICES)}, got {recipe.keep!r}")
    if recipe.max_minutes is not None and not recipe.max_minutes > 0:
        raise CarlGeoError(f"max_minutes must be > 0, got {recipe.max_minutes}")
    if not 0 <= recipe.val_fraction < 1:
        raise CarlGeoError(f"val_fraction must be in [0, 1), got {recipe.val_fraction}")
    if not recipe.lr > 0:
        raise CarlGeoError(f"lr must be > 0, got {recipe.lr}")
    if out.exists() and out.is_dir():
        raise CarlGeoError(f"out must be a file path, {out} is a folder")


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
        raise CarlGeoError(f"{src.name} has no valid pixel (all nodata) in bands {list(indexes)}")
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


def score_holdout(model: torch.nn.Module, image: np.ndarray, valid: np.ndarray, wavelengths: Sequence[float],
                  needed: np.ndarray, device: torch.device, settings: PredictSettings | None = None) -> np.ndarray:
    """Argmax classes (H, W) int64 of a normalised (C, H, W) image, predicted exactly as
    :func:`carl_geo.inference.predict_raster` predicts a raster with ``settings`` (default: its defaults;
    the inference engine: fitted tiles, softmax, cosine blending; ``valid`` (H, W) False pixels set to 0).
    Only tiles that hold a ``needed`` (H, W) pixel are computed; the other pixels are -1."""
    settings = settings or PredictSettings()
    tile_size, overlap = settings.tiling(model_patch_size(model))
    batch_size = settings.batch_size if isinstance(settings.batch_size, int) else 4
    h, w = image.shape[-2:]
    pred = np.full((h, w), -1, dtype=np.int64)

    def emit(row0: int, blended: torch.Tensor, _valid: np.ndarray) -> None:
        pred[row0:row0 + blended.shape[1]] = blended.argmax(0).cpu().numpy()

    with ModelRunner(model, wavelengths, output="classes", device=device) as runner:
        run_array(runner.predict, np.ascontiguousarray(image, dtype=np.float32), valid, emit, tile_size=tile_size,
                  overlap=overlap, batch_size=batch_size, mean=None, std=None, needed=needed)
    pred[~needed] = -1
    return pred


def _class_weights(train: np.ndarray, k: int) -> torch.Tensor:
    """Inverse square-root frequency weights (mean 1) for the cross-entropy."""
    counts = np.bincount(train[train != IGNORE_INDEX], minlength=k).astype(np.float64)
    w = 1.0 / np.sqrt(np.maximum(counts, 1))
    w[counts == 0] = 0
    return torch.tensor(w / w[counts > 0].mean(), dtype=torch.float32)


def _build_model(k: int, recipe: TrainingRecipe, weights: Path | None) -> tuple[CARLSegmenter, bool]:
    """A fresh segmenter, or a frozen pretrained backbone + new head; returns (model, frozen)."""
    head = recipe.head
    head_kwargs = dict(HEAD_KWARGS.get(recipe.config, {}).get(head, {}))
    group = recipe.max_bands
    if weights is None:
        base = get_config(recipe.config)
        patch = int(recipe.patch_size or base.patch_size)
        cfg = scratch_variant(base, patch)  # the registered "tiny_polygons" is this of "tiny" at patch 4
        if head == "progressive":
            head_kwargs.setdefault("n_up", max(0, round(math.log2(patch))))
        return CARLSegmenter(CARL(cfg), k, head, head_kwargs, max_bands=group,
                             pixelwise=recipe.mode == "pixels"), False
    backbone = load_bundle(weights).backbone
    for p in backbone.parameters():
        p.requires_grad_(False)
    if head == "progressive":
        head_kwargs.setdefault("n_up", max(0, round(math.log2(backbone.patch_size))))
    return CARLSegmenter(backbone, k, head, head_kwargs, max_bands=group), True


def _backbone_patch(weights: Path | None) -> int | None:
    """Patch size of a pretrained backbone file (None: training from scratch)."""
    if weights is None:
        return None
    return int(load_bundle(weights).backbone.patch_size)


def _polygon_widths(geoms: Any, transform: Any) -> tuple[float, ...]:
    """Square root of each polygon's area in raster pixels (its typical width, px)."""
    pixel_area = abs(transform.a * transform.e - transform.b * transform.d)
    areas = np.asarray(geoms.area, dtype=np.float64) / max(pixel_area, 1e-12)
    return tuple(float(v) for v in np.sqrt(np.maximum(areas, 0)))


class _ValidationSet:
    """A fixed set of validation chips (class balanced, drawn once) scored during training, so a
    validation costs a few forward passes however large the scene is."""

    def __init__(self, val_mask: np.ndarray, chip: int, n_chips: int, seed: int) -> None:
        self.corners: list[tuple[int, int]] = []
        if (val_mask != IGNORE_INDEX).any():
            sampler = ChipSampler(val_mask, chip, seed=seed + 1)
            self.corners = sorted(set(sampler.sample(n_chips, chip)))
        self.chip = min(chip, *val_mask.shape)

    def __bool__(self) -> bool:
        return bool(self.corners)


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
    recipe: TrainingRecipe | None = None,
    device: str = "auto",
    progress: Callable[[int, int], bool | None] | None = None,
    log: Callable[[str], None] | None = None,
    epochs: int | None = None,
    **overrides: Any,
) -> TrainingResult:
    """Train a land-cover segmenter from polygons drawn on a raster.

    The settings come from ``recipe`` (default :class:`~carl_geo.polygon_training.recipe.TrainingRecipe`),
    with keyword ``overrides`` of any of its fields (``max_steps=300``, ``chip_size=32``,
    ``band_subset=(3, 16)``, ``seed=1``, ...); every field left at None / "auto" is derived from
    the scene by :func:`~carl_geo.polygon_training.recipe.plan_recipe` (notices about adapted settings go to
    ``log``). The run validates on held-out polygons every ``val_every`` steps, keeps the best
    checkpoint and stops early when validation stops improving.

    Args:
        raster: any raster rasterio opens, any band count; must have a CRS.
        labels: vector file (any OGR format, any CRS) with one class per feature.
        label_field: column holding the class (text or integers).
        out: model bundle to write (:func:`carl_geo.save_bundle`); a confusion-matrix PNG
            ``<stem>_confusion.png`` is written beside it.
        wavelengths / sensor / bands: band selection and wavelengths (µm), resolved exactly like
            :func:`carl_geo.inference.predict_raster` does.
        weights: backbone weights file: the backbone is frozen and only the head is trained;
            None trains the ``recipe.config`` model end to end from scratch.
        recipe: the settings (see :class:`~carl_geo.polygon_training.recipe.TrainingRecipe`).
        device: ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"mps"``.
        progress: ``progress(done_steps, total_steps)``; returning False cancels
            (:class:`TrainingCancelled`, nothing written).
        log: receives human-readable progress lines.
        epochs: deprecated; ``max_steps = epochs * 64 / batch_size`` (an old epoch was 64 chips).
        **overrides: fields of :class:`~carl_geo.polygon_training.recipe.TrainingRecipe`.

    Returns:
        :class:`TrainingResult`.

    Raises:
        FileNotFoundError: raster, label or weights file missing.
        CarlGeoError (a ValueError): label field missing or not categorical, polygons outside the raster / no
            overlap after reprojection, only one class, raster without CRS, a class with fewer
            than a few valid pixels, wavelengths that do not match the bands, bad settings.
    """
    t0 = time.perf_counter()
    say = log or (lambda _msg: None)
    raster, labels, out = Path(raster), Path(labels), Path(out)
    weights = Path(weights) if weights is not None else None
    recipe = recipe or TrainingRecipe()
    unknown = sorted(set(overrides) - set(TrainingRecipe.__dataclass_fields__))
    if unknown:
        raise TypeError(f"train_from_polygons() got unknown setting(s) {unknown}; "
                        f"settings are the fields of TrainingRecipe: {sorted(TrainingRecipe.__dataclass_fields__)}")
    if overrides:
        recipe = recipe.replace(**overrides)
    if epochs is not None:
        if int(epochs) != epochs or epochs < 1:
            raise CarlGeoError(f"epochs must be a positive integer, got {epochs!r}")
        warnings.warn("train_from_polygons(epochs=...) is deprecated: use max_steps", DeprecationWarning,
                      stacklevel=2)
        recipe = recipe.replace(max_steps=max(1, round(epochs * LEGACY_CHIPS_PER_EPOCH / (recipe.batch_size or 8))))
    _check_args(raster, out, weights, recipe)
    check_training_paths(raster, labels, out, weights)  # never write over the raster, labels or weights

    # ---- everything a user can get wrong is checked here, before any training -------------
    gdf = read_label_vector(labels, label_field)
    with open_raster(raster) as src:
        if src.crs is None:
            raise CarlGeoError(f"{raster.name} has no coordinate reference system; assign one "
                             "(e.g. gdal_edit.py -a_srs EPSG:xxxx) so the polygons can be placed on it")
        indexes, wls, band_names, sensor_name = resolve_raster_bands(src, wavelengths=wavelengths, sensor=sensor,
                                                                     bands=bands)
        geoms, inside = polygons_on_grid(gdf, src.crs, tuple(src.bounds))
        margin = int(recipe.chip_size or 64)
        window = labels_window(tuple(geoms[inside].total_bounds), src.transform, (src.height, src.width), margin)
        win_transform = src.window_transform(window)
        lab: LabelRaster = rasterize_labels(gdf, label_field, shape=(int(window.height), int(window.width)),
                                            transform=win_transform, crs=src.crs)
        img_np, valid = read_window(src, indexes, window)
        check_label_pixels(lab, valid)
        mean, std = scene_statistics(src, indexes)
        raster_crs = src.crs.to_string()
        scene_shape = (src.height, src.width)
        widths = _polygon_widths(geoms[inside], src.transform)

    k = len(lab.class_names)
    mask = np.where(valid, lab.mask, IGNORE_INDEX)
    dev = resolve_device(device)
    facts = SceneFacts(n_bands=len(indexes), window=mask.shape, scene=scene_shape,
                       class_pixels=tuple(int((mask == i).sum()) for i in range(k)), polygon_widths=widths,
                       device=dev.type)
    plan = plan_recipe(facts, recipe, frozen=weights is not None, backbone_patch=_backbone_patch(weights))
    r = plan.recipe
    for notice in plan.notices:
        say(f"note: {notice}")
    chip, batch, total = int(r.chip_size), int(r.batch_size), int(r.max_steps)
    train_size = 1 if r.mode == "pixels" else chip  # side of a training sample (px)

    split = holdout_split(mask, lab.polygon_ids, lab.class_names, val_fraction=r.val_fraction,
                          block=max(8, chip // 4), seed=r.seed)
    n_train, n_val = int((split.train != IGNORE_INDEX).sum()), int((split.val != IGNORE_INDEX).sum())
    say(f"{k} classes {lab.class_names}; {n_train} training / {n_val} validation pixels "
        f"(hold-out: {', '.join(f'{n}: {h}' for n, h in split.how.items())})")
    if lab.n_polygons_outside:
        say(f"{lab.n_polygons_outside} polygon(s) lie outside the raster and were ignored")
    if lab.n_conflict_pixels:
        say(f"note: {lab.n_conflict_pixels} px lie under polygons of different classes and were left out of training")

    # ---- model and data ---------------------------------------------------------------------
    torch.manual_seed(r.seed)
    model, frozen = _build_model(k, r, weights)
    model.to(dev)

    if r.normalization == "scene":
        img_np = normalize(img_np, mean, std)
        img_np[:, ~valid] = 0.0
    binning = bool(r.max_bands) and img_np.shape[0] > r.max_bands
    if binning:  # bins are contiguous in wavelength
        order = np.argsort(wls, kind="stable")
        img_np = img_np[order]
        wls_sorted = [wls[i] for i in order]
    else:
        wls_sorted = list(wls)
    img_t = torch.from_numpy(_pad_to(img_np.astype(np.float32, copy=False), chip, 0.0))
    valid_t = torch.from_numpy(_pad_to(valid, chip, False))
    train_t = torch.from_numpy(_pad_to(split.train, chip, IGNORE_INDEX))
    val_t = torch.from_numpy(_pad_to(split.val, chip, IGNORE_INDEX))
    wl_t = torch.tensor(wls_sorted, dtype=torch.float32)
    sampler = ChipSampler(train_t.numpy(), chip, seed=r.seed)
    gen = torch.Generator().manual_seed(r.seed)
    band_rng = np.random.default_rng(r.seed + 7)
    val_set = _ValidationSet(val_t.numpy(), chip, n_chips=VAL_CHIPS, seed=r.seed)

    def chips(corners: Sequence[tuple[int, int]], size: int, target: torch.Tensor
              ) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.stack([img_t[:, a:a + size, b:b + size] for a, b in corners])
        y = torch.stack([target[a:a + size, b:b + size] for a, b in corners])
        if r.normalization == "chip":
            v = torch.stack([valid_t[a:a + size, b:b + size] for a, b in corners])
            x = standardize_valid(x, v)
        return x, y

    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=r.lr, weight_decay=r.weight_decay)
    deadline = t0 + 60 * r.max_minutes if r.max_minutes else None
    loop_start = time.perf_counter()

    def progress_share(i: int) -> float:
        """Share of the budget spent after ``i`` steps: steps, or time when a time budget runs out first."""
        share = i / total
        if deadline is not None:
            share = max(share, (time.perf_counter() - loop_start) / max(1e-9, deadline - loop_start))
        return min(1.0, share)

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: warmup_cosine_at(progress_share(i), r.warmup, 1 / total))
    cw = _class_weights(split.train, k).to(dev) if r.class_weights else None
    share = f"{100 * (1 - r.full_band_share):.0f} % of the steps"
    if binning and r.band_subset is None:
        subset_txt = f", {r.max_bands} equal bins"
    elif binning:
        subset_txt = (f", random binning into {max(MIN_TRAIN_BANDS, r.max_bands // 2)}-{r.max_bands} bands in "
                      f"{share}, {r.max_bands} equal bins in the others")
    elif r.band_subset:
        subset_txt = f", random subsets of {r.band_subset[0]}-{r.band_subset[1]} bands in {share}"
    else:
        subset_txt = ""
    say(f"training {'head on a frozen backbone' if frozen else f'{r.config} CARL end to end'} "
        f"({sum(p.numel() for p in params) / 1e6:.2f} M trainable parameters, patch {model.backbone.patch_size}) "
        f"on {dev}: up to {total} steps of "
        f"{f'{batch} single pixels' if r.mode == 'pixels' else f'{batch} chips of {chip} px'}{subset_txt}; "
        f"validation every {r.val_every} steps" if val_set else "")

    # ---- training loop ----------------------------------------------------------------------
    cadence = ValidationCadence(total, r.val_every)
    keeper = BestCheckpoint(patience=r.patience, from_share=MIN_STEP_SHARE) if r.keep == "best" else None
    average = WeightAverage(from_share=AVERAGE_FROM_SHARE) if r.keep == "average" else None
    step, shown, losses = 0, 0, []
    stop_reason = "step budget"
    while step < total:
        model.train()
        if frozen:
            model.backbone.eval()
        x, y = chips(sampler.sample(batch, train_size), train_size, train_t)
        wl_b: torch.Tensor = wl_t
        if binning and (r.band_subset is None or band_rng.random() < r.full_band_share):  # the prediction bins
            x, wl_b = apply_bins(x, wl_t, bin_matrix([equal_bins(x.shape[1], r.max_bands)] * batch, x.shape[1]))
        elif binning:  # a random broad-band camera per sample
            n_bins = int(band_rng.integers(max(MIN_TRAIN_BANDS, r.max_bands // 2), r.max_bands + 1))
            edges = [random_bins(x.shape[1], n_bins, band_rng) for _ in range(batch)]
            x, wl_b = apply_bins(x, wl_t, bin_matrix(edges, x.shape[1]))
        elif r.band_subset and band_rng.random() >= r.full_band_share:
            idx = draw_band_subsets(band_rng, batch, x.shape[1], *r.band_subset)
            x = torch.gather(x, 1, idx[:, :, None, None].expand(-1, -1, *x.shape[-2:]))
            wl_b = wl_t[idx]
        if r.mode != "pixels" or r.intensity_jitter:  # a single pixel has no orientation
            x, y = augment(x, y, gen, r.intensity_jitter)
        logits = model(x.to(dev), wl_b.to(dev))
        loss = F.cross_entropy(logits, y.to(dev), weight=cw, ignore_index=IGNORE_INDEX)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
        step += 1
        if deadline is not None:  # progress follows the clock when a time budget ends the run first
            shown = max(shown, min(total, round(progress_share(step) * total)))
        else:
            shown = step
        if progress is not None and progress(shown, total) is False:
            raise TrainingCancelled(f"training cancelled after {step} of {total} steps; nothing was written")
        last = step == total or (deadline is not None and time.perf_counter() > deadline)
        share_now = progress_share(step)
        if cadence.due(share_now) or last:
            line = f"step {step}/{total}  loss {float(np.mean(losses[-r.val_every:])):.4f}"
            stop = False
            if val_set:
                score = _validate(model, val_set, chips, val_t, wl_t, k, dev)
                line += f"  validation mIoU {score:.3f}"
                if keeper is not None:
                    stop = keeper.update(score, step, share_now, model, last=last)
                    line += ("  (best)" if keeper.is_new and keeper.step == step else
                             "" if keeper.counts(share_now, last) else "  (checkpoints count from half the budget)")
            if average is not None and average.update(step, share_now, model, last=last):
                line += "  (averaged)"
            say(line)
            if stop and not last:  # the last step ends the run anyway: its reason is the budget
                stop_reason = f"early stop: no better validation for {keeper.stale} checks"
                break
        if deadline is not None and time.perf_counter() > deadline:
            stop_reason = f"time budget of {r.max_minutes:g} min"
            break
    if keeper is not None and keeper.state is not None:
        model.load_state_dict(keeper.state)
        kept = f"the model of step {keeper.step}"
    elif average is not None and average.state is not None:
        model.load_state_dict(average.state)
        kept = (f"the average of the models at steps {', '.join(map(str, average.steps))}"
                if len(average.steps) > 1 else f"the model of step {average.steps[0]}")
    else:
        kept = f"the model of step {step}"
    best_step = keeper.step if keeper is not None and keeper.step else None
    say(f"stopped after {step} steps ({stop_reason}); kept {kept}")
    if progress is not None and shown < total:
        progress(total, total)

    # ---- validation report --------------------------------------------------------------------
    model.eval()
    evaluated_on = "validation" if n_val else "training"
    ref = split.val if n_val else split.train
    full = img_np if r.normalization == "scene" else standardize_valid(
        torch.from_numpy(img_np)[None], torch.from_numpy(valid)[None])[0].numpy()
    pred = score_holdout(model, full, valid, wls_sorted, ref != IGNORE_INDEX, dev)
    cm = confusion_matrix(ref, pred, k)
    report = segmentation_report(cm, lab.class_names)
    report.pop("n_pixels")
    report.update(n_train_pixels=n_train, n_val_pixels=n_val, evaluated_on=evaluated_on, steps=step,
                  best_step=best_step, averaged_steps=list(average.steps) if average is not None else None,
                  stop_reason=stop_reason, notices=plan.notices,
                  seconds=round(time.perf_counter() - t0, 2))

    # ---- write ------------------------------------------------------------------------------
    model.cpu().eval()
    normalization = {"mode": "fixed", "mean": mean, "std": std} if r.normalization == "scene" else {"mode": "chip"}
    bundle = make_bundle(
        model, class_names=lab.class_names, class_values=class_codes(lab.class_names), wavelengths=wls,
        band_names=band_names, sensor=sensor_name, normalization=normalization,
        meta={"training": {"raster": str(raster), "labels": str(labels), "label_field": label_field,
                           "raster_crs": raster_crs, "band_indexes": indexes, "recipe": r.to_dict(),
                           "weights": str(weights) if weights else None, "holdout": split.how,
                           "scene_statistics": {"mean": mean, "std": std}},
              "report": report},
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    save_bundle(bundle, out)
    png = confusion_png(cm, lab.class_names, confusion_png_path(out),
                        title=f"{evaluated_on} confusion matrix (OA {report['overall_accuracy']:.2f}, "
                              f"mIoU {report['mean_iou']:.2f})")
    report["seconds"] = round(time.perf_counter() - t0, 2)
    return TrainingResult(model_path=out, bundle=bundle, report=report, confusion_png=png)


#: Validation chips scored at every validation step.
VAL_CHIPS = 24


@torch.no_grad()
def _validate(model: CARLSegmenter, val_set: _ValidationSet, chips: Callable, val_t: torch.Tensor,
              wl_t: torch.Tensor, k: int, dev: torch.device, batch: int = 8) -> float:
    """Mean IoU of the model on the validation chips (all bands; band groups as at prediction)."""
    model.eval()
    cm = np.zeros((k, k), dtype=np.int64)
    size = val_set.chip
    for i in range(0, len(val_set.corners), batch):
        x, y = chips(val_set.corners[i:i + batch], size, val_t)
        pred = model(x.to(dev), wl_t.to(dev)).argmax(1).cpu().numpy()
        cm += confusion_matrix(y.numpy(), pred, k)
    model.train()
    return float(np.nan_to_num(mean_iou(cm)))


@dataclass
class ValidationCadence:
    """When the training loop validates: every ``every`` of ``total`` steps, or every ``every / total`` of a time
    budget when the clock runs ahead of the steps; one cadence either way. Validating by steps AND by time doubled
    the validations of a run whose clock and steps advance together, and so halved its patience: Sentinel-2 runs
    stopped early at 70 % and 90 % of their budget, at a learning rate still high (held-out mIoU 0.223 / 0.226;
    runs of the whole budget 0.25-0.26).

    Attributes:
        total: steps in the budget.
        every: steps between validations.
        next_share: share of the budget (0..1) at which the next validation is due.
    """

    total: int
    every: int
    next_share: float = field(init=False)

    def __post_init__(self) -> None:
        self.next_share = self.every / self.total

    def due(self, share: float) -> bool:
        """True when ``share`` (0..1: ``i / total`` after ``i`` steps, or the share of a time budget spent, whichever
        is further on) has reached the next validation; the one after that is then ``every / total`` further on."""
        if share < self.next_share - 0.5 / self.total:
            return False
        self.next_share = share + self.every / self.total
        return True


def warmup_cosine_at(share: float, warmup: float, first: float = 0.0, floor: float = 0.01) -> float:
    """LR factor at ``share`` (0..1) of the training budget: linear warm-up over the first ``warmup``
    share (starting at ``first``), then a cosine decay to ``floor`` at 1. A time budget makes the
    schedule follow the clock, so a slow or busy machine still ends its run at a low learning rate."""
    if share < warmup:
        return min(1.0, max(first, share / warmup))
    return cosine_decay((share - warmup) / max(1e-9, 1 - warmup), floor)


def draw_band_subsets(rng: np.random.Generator, batch: int, n_bands: int, lo: int, hi: int) -> torch.Tensor:
    """(batch, n) int64 band indexes: one random subset per sample, sorted (wavelength order kept);
    n is drawn once per batch, uniformly in [lo, min(hi, n_bands)], so a batch stays a tensor."""
    n = int(rng.integers(min(lo, n_bands), min(hi, n_bands) + 1))
    rows = [np.sort(rng.choice(n_bands, size=n, replace=False)) for _ in range(batch)]
    return torch.from_numpy(np.stack(rows).astype(np.int64))
