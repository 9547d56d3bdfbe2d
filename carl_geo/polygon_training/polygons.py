"""Train a land-cover classifier from an analyst's polygons on one raster: :func:`train_from_polygons`.

The run is a sequence of stages, each in its own module (as inference/ is settings -> engine -> predictor):

1. :mod:`~carl_geo.polygon_training.scene`: read and check the labelled window, hold out whole polygons;
2. :mod:`~carl_geo.polygon_training.recipe`: every setting, derived from the scene where not given;
3. :mod:`~carl_geo.polygon_training.carl_model` with :mod:`~carl_geo.polygon_training.batches` and
   :mod:`~carl_geo.polygon_training.loop`: the CARL model (chips or pixels mode) on the training polygons;
4. :mod:`~carl_geo.polygon_training.pixel_features`: per-pixel features at the labelled pixels (bands, window
   context, CARL's class probabilities), through the inference engine;
5. :mod:`~carl_geo.polygon_training.heads` and :mod:`~carl_geo.polygon_training.candidates`: the candidate
   models (forest on bands, forest on bands + context, CARL alone, forest and MLP on context + CARL), scored on
   the held-out polygons; the kept one is refitted on every polygon and saved as a
   :class:`~carl_geo.models.pixel_classifier.PixelClassifier` bundle that
   :func:`carl_geo.inference.predict_raster` maps at pixel resolution with no extra arguments.

Every input error is raised before training starts, and nothing is written then.
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from carl_geo.datasets.vector_labels import IGNORE_INDEX, class_codes
from carl_geo.devices import resolve_device
from carl_geo.errors import Cancelled, CarlGeoError, OutputPathError
from carl_geo.inference.engine import run_array
from carl_geo.inference.runner import ModelRunner
from carl_geo.inference.settings import PredictSettings
from carl_geo.models import ModelBundle, make_bundle, save_bundle
from carl_geo.models.band_adapter import ExemplarBank
from carl_geo.models.context_features import ContextFeatures
from carl_geo.models.pixel_classifier import PixelClassifier
from carl_geo.polygon_training.batches import draw_band_subsets  # noqa: F401 (public name kept here)
from carl_geo.polygon_training.candidates import (DEFAULT_CANDIDATE, HeldOut, choose, evidence_table, fit_candidates,
                                                  holdout_caveat, near_chance)
from carl_geo.polygon_training.carl_model import HEAD_KWARGS, RunBudget, backbone_patch, build_carl, train_carl  # noqa: F401
from carl_geo.polygon_training.heads import fit_head
from carl_geo.polygon_training.loop import LoopHooks, ValidationCadence, warmup_cosine_at  # noqa: F401
from carl_geo.polygon_training.metrics import confusion_matrix, segmentation_report
from carl_geo.polygon_training.outputs import check_training_paths, confusion_png_path
from carl_geo.polygon_training.pixel_features import (FeatureStack, PixelSample, columns, feature_pass_seconds,
                                                      fit_context, pixel_samples)
from carl_geo.polygon_training.recipe import TrainingRecipe, plan_recipe, steps_for_epochs
from carl_geo.polygon_training.report import confusion_png
from carl_geo.polygon_training.scene import TrainingScene, polygon_widths, prepare_scene, split_scene
from carl_geo.transforms import standardize_valid

_build_model = build_carl  # old private names (benchmarks/gpu/polygon_sweep.py, tests)
_polygon_widths = polygon_widths

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
        candidates: every candidate model of the evidence table (name -> bundle, heads fitted on the training
            polygons only; not saved), to map and compare them.
    """

    model_path: Path
    bundle: ModelBundle
    report: dict[str, Any]
    confusion_png: Path | None
    candidates: dict[str, ModelBundle] = field(default_factory=dict)


def _check_args(raster: Path, out: Path, weights: Path | None) -> None:
    if not str(raster).startswith("/vsi") and not raster.exists():
        raise FileNotFoundError(f"raster not found: {raster}")
    if weights is not None and not weights.exists():
        raise FileNotFoundError(f"weights file not found: {weights}")
    if out.exists() and out.is_dir():
        raise CarlGeoError(f"out must be a file path, {out} is a folder")
    check_writable_folder(out.parent)


def check_writable_folder(folder: Path) -> None:
    """Raise a one-line :class:`~carl_geo.errors.OutputPathError` now, before minutes of training, when no file can
    be created in ``folder`` (read-only, no permission, a file in the way); creates a missing folder."""
    import tempfile

    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".carl_write_test_"):
            pass
    except OSError as e:
        raise OutputPathError(f"cannot write the model into {folder}: {e.strerror or e}; choose another folder for "
                              "the model file") from None


def score_holdout(model: torch.nn.Module, image: np.ndarray, valid: np.ndarray, wavelengths: Sequence[float],
                  needed: np.ndarray, device: torch.device, settings: PredictSettings | None = None) -> np.ndarray:
    """Argmax classes (H, W) int64 of a normalised (C, H, W) image, predicted exactly as
    :func:`carl_geo.inference.predict_raster` predicts a raster with ``settings`` (default: its defaults;
    the inference engine: fitted tiles, softmax, cosine blending; ``valid`` (H, W) False pixels set to 0).
    Only tiles that hold a ``needed`` (H, W) pixel are computed; the other pixels are -1."""
    settings = settings or PredictSettings()
    tile_size, overlap = settings.tiling_for(model)
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



#: Training pixels the heads see at most (a uniform sample of the training polygons' pixels) and held-out pixels
#: scored at most. Forests on 20,000 / 60,000 Sentinel-2 pixels: mIoU 0.310 / 0.317 (context), 0.285 / 0.294 (bands).
HEAD_TRAIN_PIXELS = 40_000
HEAD_VAL_PIXELS = 100_000
#: Seconds reserved for the pixel heads (fitting, scoring, refit, the band bank) after the CARL loop under a run
#: budget, at the head work of the Sentinel-2 bench scene (:data:`HEADS_REFERENCE_WORK`): they took 53-76 s there in
#: three runs on 2 cores (8 classes, 60 features, 40,000 + 62,591 sampled pixels). Other scenes reserve in
#: proportion to their head work (:func:`heads_seconds`); the 90 s everywhere ended a NC run's CARL training after 144
#: of 400 steps on a busy machine (the reserve doubles with the slowdown), where the heads took 8 s.
HEADS_SECONDS = 90.0
#: Head work of that reference: sampled pixels x sqrt(feature columns) (forests, which choose among sqrt(F)
#: features per split, take most of the time).
HEADS_REFERENCE_WORK = (40_000 + 62_591) * 60 ** 0.5
#: The reserve of the smallest scenes (NC: 1,908 sampled pixels, 30 features, 8 s of features and heads; the
#: generated 200-band scene: 20 s).
HEADS_MIN_SECONDS = 20.0


def heads_seconds(n_train: int, n_val: int, n_features: int) -> float:
    """Seconds to reserve for the pixel heads of a scene with ``n_train`` / ``n_val`` labelled training / held-out
    pixels (sampled down to :data:`HEAD_TRAIN_PIXELS` / :data:`HEAD_VAL_PIXELS`) and ``n_features`` feature columns:
    :data:`HEADS_SECONDS` scaled by the work against :data:`HEADS_REFERENCE_WORK`, at least
    :data:`HEADS_MIN_SECONDS`."""
    work = (min(n_train, HEAD_TRAIN_PIXELS) + min(n_val, HEAD_VAL_PIXELS)) * max(1, n_features) ** 0.5
    return max(HEADS_MIN_SECONDS, HEADS_SECONDS * work / HEADS_REFERENCE_WORK)


#: Share of the progress bar the pixel heads take after the CARL model's steps.
HEAD_PROGRESS_SHARE = 0.1


def _scaled_progress(progress: Callable[[int, int], Any] | None, share: float
                     ) -> tuple[Callable[[int, int], Any] | None, Callable[[float], None]]:
    """(progress for the CARL loop, which fills ``1 - share`` of the bar; ``heads(fraction)`` for the rest)."""
    if progress is None:
        return None, lambda _f: None
    state = {"total": 1}

    def loop(done: int, total: int) -> Any:
        state["total"] = total
        full = round(total / (1 - share))
        return progress(done, full)

    def heads(fraction: float) -> None:
        total = state["total"]
        full = round(total / (1 - share))
        if progress(total + round(fraction * (full - total)), full) is False:
            raise Cancelled("training cancelled while fitting the pixel heads; nothing was written")

    return loop, heads


def _pixel_classifier(carl: torch.nn.Module, scene: TrainingScene, context: ContextFeatures, spec_columns: str | None,
                      heads: list[torch.nn.Module], carl_weight: float) -> PixelClassifier:
    """A candidate's model: ``carl`` + heads reading ``spec_columns`` of the feature stack."""
    if not heads:
        return PixelClassifier(carl, scene.wavelengths)
    ctx = context
    if spec_columns == "bands":  # the bands alone: context features without windows, same statistics
        ctx = ContextFeatures(context.n_bands, context.n_components, windows=())
        ctx.load_state_dict(context.state_dict())
    return PixelClassifier(carl, scene.wavelengths, context=ctx, carl_inputs=spec_columns == "all", heads=heads,
                           carl_weight=carl_weight)


def refit_sample(train: PixelSample, val: PixelSample, n_train: int, n_val: int, seed: int) -> PixelSample:
    """The training sample plus the held-out pixels at the same sampling rate (so every polygon weighs as much as
    in the training sample: all held-out pixels next to a 40,000-pixel sample of 190,000 training pixels made the
    held-out polygons 60 % of the refit on Sentinel-2 and cost 0.01-0.02 mIoU)."""
    if not len(val):
        return train
    rate = len(train) / max(1, n_train)
    n = min(len(val), max(1, round(rate * n_val)))
    keep = np.sort(np.random.default_rng(seed + 2).choice(len(val), n, replace=False))
    return PixelSample.concat([train, val.take(keep)])


#: A time budget that ends the CARL model's training before this share of its steps gets a notice.
SHORT_RUN_SHARE = 0.5


def cut_short(steps: int, planned: int, stop_reason: str) -> str | None:
    """A one-line notice when the time budget ended training after fewer than :data:`SHORT_RUN_SHARE` of the planned
    steps (a slow or busy CPU), saying what to raise; else None."""
    if not stop_reason.startswith("time budget") or steps >= SHORT_RUN_SHARE * planned:
        return None
    return (f"the {stop_reason} ended the CARL model's training after {steps} of {planned} steps (a slow or busy "
            "CPU): its part of the map is weaker than it could be; give more time (max_minutes, carl-geo train "
            "--max-minutes, QGIS 'Training time at most') or train on a GPU")


def train_from_polygons(
    raster: str | os.PathLike,
    labels: str | os.PathLike,
    label_field: str,
    out: str | os.PathLike,
    *,
    wavelengths: Sequence[float] | None = None,
    sensor: str | None = None,
    bands: Sequence[int | str] | None = None,
    nodata: float | None = None,
    weights: str | os.PathLike | None = None,
    recipe: TrainingRecipe | None = None,
    device: str = "auto",
    progress: Callable[[int, int], bool | None] | None = None,
    log: Callable[[str], None] | None = None,
    hooks: LoopHooks | None = None,
    epochs: int | None = None,
    **overrides: Any,
) -> TrainingResult:
    """Train a land-cover classifier from polygons drawn on a raster.

    The settings come from ``recipe`` (default :class:`~carl_geo.polygon_training.recipe.TrainingRecipe`), with
    keyword ``overrides`` of any of its fields (``max_steps=300``, ``select="carl_mlp"``, ``seed=1``, ...); every
    field left at None / "auto" is derived from the scene by :func:`~carl_geo.polygon_training.recipe.plan_recipe`
    (notices about adapted settings go to ``log``). The CARL model trains on the training polygons (chips or
    pixels); then every candidate of :data:`~carl_geo.polygon_training.candidates.CANDIDATES` is fitted on the
    same training pixels and scored on the held-out polygons, and the kept candidate (best held-out mIoU among
    the CARL candidates unless a plain forest is clearly better, or ``select``) is refitted on every polygon.

    Args:
        raster: any raster rasterio opens, any band count; must have a CRS.
        labels: vector file (any OGR format, any CRS) with one class per feature.
        label_field: column holding the class (text or integers).
        out: model bundle to write (:func:`carl_geo.save_bundle`); a confusion-matrix PNG
            ``<stem>_confusion.png`` is written beside it.
        wavelengths / sensor / bands: band selection and wavelengths (µm), resolved exactly like
            :func:`carl_geo.inference.predict_raster` does.
        nodata: the raster's nodata value in place of the file's (None: the file's nodata / mask), e.g. 0 for fill
            the file does not declare: such pixels are left out of the labels and of the model's statistics.
        weights: backbone weights file: the backbone is frozen and only the CARL head is trained;
            None trains the ``recipe.config`` model end to end from scratch.
        recipe: the settings (see :class:`~carl_geo.polygon_training.recipe.TrainingRecipe`).
        device: ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"mps"``.
        progress: ``progress(done, total)``; returning False cancels (:class:`TrainingCancelled`, nothing written).
        log: receives human-readable progress lines (and the evidence table).
        hooks: callbacks of the CARL training loop (:class:`~carl_geo.polygon_training.loop.LoopHooks`).
        epochs: deprecated; ``max_steps = epochs * 64 / batch_size`` (an old epoch was 64 chips).
        **overrides: fields of :class:`~carl_geo.polygon_training.recipe.TrainingRecipe`.

    Returns:
        :class:`TrainingResult`; ``report["candidates"]`` is the evidence table (one dict per candidate),
        ``report["kept"]`` the kept candidate's name and ``report["kept_reason"]`` why.

    Raises:
        FileNotFoundError: raster, label or weights file missing.
        CarlGeoError (a ValueError): label field missing or not categorical, polygons outside the raster / no
            overlap after reprojection, only one class, raster without CRS, a class with fewer
            than a few valid pixels, wavelengths that do not match the bands, bad settings.
    """
    t0 = time.perf_counter()
    say = log or (lambda _msg: None)
    raster_source, labels_source = os.fspath(raster), os.fspath(labels)  # /vsizip/... kept as given
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
        recipe = recipe.replace(max_steps=steps_for_epochs(epochs, recipe.batch_size))
    _check_args(raster, out, weights)
    check_training_paths(raster, labels, out, weights)  # never write over the raster, labels or weights

    # ---- 1. the scene: everything a user can get wrong is checked here, before any training ------------------
    dev = resolve_device(device)
    scene = prepare_scene(raster_source, labels_source, label_field, wavelengths=wavelengths, sensor=sensor, bands=bands,
                          nodata=nodata, margin=int(recipe.chip_size or 64), device=dev.type)
    plan = plan_recipe(scene.facts, recipe, frozen=weights is not None, backbone_patch=backbone_patch(weights))
    r = plan.recipe
    notices = scene.notices + plan.notices
    for notice in plan.notices:
        say(f"note: {notice}")
    split = split_scene(scene, r.val_fraction, block=max(8, int(r.chip_size) // 4), seed=r.seed)
    k, names = scene.n_classes, scene.class_names
    say(f"{k} classes {names}; {scene.n_train} training / {scene.n_val} validation pixels "
        f"(hold-out: {', '.join(f'{n}: {h}' for n, h in split.how.items())})")
    for notice in scene.notices:
        say(f"note: {notice}")

    # ---- 2. the CARL model ------------------------------------------------------------------------------------
    heads_on = r.normalization == "scene" and r.select != "carl"
    image = scene.normalized() if r.normalization == "scene" else standardize_valid(
        torch.from_numpy(scene.image)[None], torch.from_numpy(scene.valid)[None])[0].numpy()

    def after_loop(carl_model: torch.nn.Module) -> float:  # seconds of stage 3 with this model, measured
        context = ContextFeatures(image.shape[0])  # unfitted: same cost
        stack = FeatureStack(context, carl_model)
        heads = heads_seconds(scene.n_train, scene.n_val, context.out_channels + scene.n_classes)
        return heads + feature_pass_seconds(stack, image, scene.valid, scene.wavelengths, dev)

    budget = None  # the CPU default's budget holds for the whole run, not only the loop
    if plan.run_minutes is not None and heads_on:
        budget = RunBudget(t0 + 60 * plan.run_minutes, plan.run_minutes, after_loop)
    loop_progress, heads_progress = _scaled_progress(progress, HEAD_PROGRESS_SHARE if heads_on else 0.0)
    carl, loop = train_carl(scene, r, weights, dev, progress=loop_progress, log=say, hooks=hooks, budget=budget,
                             image=image if r.normalization == "scene" else None)
    short = cut_short(loop.steps, int(r.max_steps), loop.stop_reason)
    if short:
        say(f"note: {short}")
        notices.append(short)

    # ---- 3. pixel features, candidates, the kept model --------------------------------------------------------
    evaluated_on = "validation" if scene.n_val else "training"
    rows: list[dict[str, Any]] = []
    others: dict[str, torch.nn.Module] = {}
    if heads_on:
        context = fit_context(scene, image, seed=r.seed)
        stack = FeatureStack(context, carl)
        train_px, val_px = pixel_samples(scene, stack, image, dev, train_pixels=HEAD_TRAIN_PIXELS,
                                         val_pixels=HEAD_VAL_PIXELS, seed=r.seed)
        heads_progress(0.2)
        scored = val_px if len(val_px) else train_px
        carl_cols = slice(context.out_channels, None)
        candidates = fit_candidates(train_px, scored, k, names, lambda which: columns(context, which), carl_cols,
                                    seed=r.seed, log=say)
        heads_progress(0.8)
        if scene.n_val:
            held_out = HeldOut(val_px.labels, val_px.groups, k, seed=r.seed) if val_px.groups is not None else None
            kept, why = choose(candidates, r.select, held_out)
        else:
            kept, _ = choose(candidates, r.select if r.select != "auto" else NO_HOLDOUT_SELECT)
            why = (f"no polygon could be held out to compare the candidates (their scores above are fits to the "
                   f"training polygons): kept {kept.name}" + (", the default" if r.select == "auto" else ""))
        rows = [c.row() for c in candidates]
        heads = kept.heads
        every = refit_sample(train_px, val_px, scene.n_train, scene.n_val, r.seed)
        if heads and len(val_px):  # refit on every polygon
            cols = columns(context, kept.spec.columns or "all")
            heads = [fit_head(kind, every.features[:, cols], every.labels, k, seed=r.seed) for kind in kept.spec.heads]
        model = _pixel_classifier(carl, scene, context, kept.spec.columns, heads, kept.carl_weight)
        if heads:  # the band-agnostic path for other band sets: the same labelled pixels, kept by wavelength
            model.bank = ExemplarBank.from_image(image, scene.wavelengths, every.index, every.labels, k,
                                                 context.windows, seed=r.seed)
        others = {c.name: _pixel_classifier(carl, scene, context, c.spec.columns, c.heads, c.carl_weight)
                  for c in candidates}
        report = dict(kept.report)
        kept_name = kept.name
        heads_progress(1.0)
    else:
        ref = split.val if scene.n_val else split.train
        pred = score_holdout(carl, image, scene.valid, scene.wavelengths, ref != IGNORE_INDEX, dev)
        report = segmentation_report(confusion_matrix(ref, pred, k), names)
        model, kept_name = carl, "carl"
        why = ("the CARL model was asked for" if r.select == "carl" else
               "per-chip normalisation: the pixel heads need the scene's normalisation, so the CARL model is kept")
    for line in evidence_table(rows, kept_name) if rows else []:
        say(line)
    say(f"kept: {kept_name}: {why}")
    caveat = holdout_caveat(split.how)
    if caveat:
        say(f"note: {caveat}")
        notices.append(caveat)
    warning = near_chance(report, k)
    if warning:
        say(f"warning: {warning}")
    report.pop("n_pixels", None)
    report.update(n_train_pixels=scene.n_train, n_val_pixels=scene.n_val, evaluated_on=evaluated_on,
                  steps=loop.steps, best_step=loop.best_step, averaged_steps=loop.averaged_steps,
                  stop_reason=loop.stop_reason, notices=notices, candidates=rows, kept=kept_name, kept_reason=why,
                  warning=warning, seconds=round(time.perf_counter() - t0, 2))

    # ---- 4. write ---------------------------------------------------------------------------------------------
    model.cpu().eval()
    normalization = ({"mode": "fixed", "mean": scene.mean, "std": scene.std} if r.normalization == "scene"
                     else {"mode": "chip"})
    facts = dict(class_names=names, class_values=class_codes(names), wavelengths=scene.wavelengths,
                 band_names=scene.band_names, sensor=scene.sensor, normalization=normalization)
    bundle = make_bundle(
        model, class_names=names, class_values=class_codes(names), wavelengths=scene.wavelengths,
        band_names=scene.band_names, sensor=scene.sensor, normalization=normalization,
        meta={"training": {"raster": str(raster), "labels": str(labels), "label_field": label_field,
                           "raster_crs": scene.crs, "band_indexes": scene.band_indexes, "nodata": nodata,
                           "recipe": r.to_dict(),
                           "weights": str(weights) if weights else None, "holdout": split.how,
                           "scene_statistics": {"mean": scene.mean, "std": scene.std}},
              "report": report},
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    save_bundle(bundle, out)
    png = confusion_png(np.asarray(report["confusion_matrix"]), names, confusion_png_path(out),
                        title=f"{kept_name}, {evaluated_on} (OA {report['overall_accuracy']:.2f}, "
                              f"mIoU {report['mean_iou']:.2f})")
    report["seconds"] = round(time.perf_counter() - t0, 2)
    return TrainingResult(model_path=out, bundle=bundle, report=report, confusion_png=png,
                          candidates={n: make_bundle(m.cpu().eval(), **facts) for n, m in others.items()})


#: Without held-out polygons nothing can rank the candidates (every head fits its training pixels): the default
#: candidate is kept.
NO_HOLDOUT_SELECT = DEFAULT_CANDIDATE
