"""The polygon-training recipe: every setting of a run, and how the defaults follow from the scene.

:class:`TrainingRecipe` holds the settings. Fields left at ``None`` (or ``"auto"``) are filled by
:func:`plan_recipe` from :class:`SceneFacts` (band count, size of the labelled window, polygon sizes,
pixels per class), so that one call works on a 6-band Landsat scene, a 13-band Sentinel-2 scene and a
200-band airborne hyperspectral cube alike. :func:`plan_recipe` also returns one-line notices for every
setting it had to adapt (a scene smaller than a chip, a class with a single tiny polygon, very many
bands, sparse labels).

How each default was chosen (measured with ``benchmarks/bench_polygons.py`` on the NC Landsat 7,
the Sentinel-2 Havelland and the generated 200-band scene; see the README table):

* **mode**: ``"pixels"`` (each pixel classified from its own spectrum) for rasters with more than
  :data:`PIXEL_MIN_BANDS` bands, small polygons and at most :data:`PIXEL_MAX_SCENE` pixels, where chip
  models overfit the few training fields; ``"chips"`` (spatial context) otherwise;
* **budget**: a number of optimiser steps with validation on held-out polygons every
  ``val_every`` steps; the kept model is the average of the model states at the checks of the last quarter of
  the budget (:data:`AVERAGE_FROM_SHARE`; :mod:`~carl_geo.polygon_training.checkpoints` says why), or with
  ``keep="best"`` the best validation checkpoint of the second half (:data:`MIN_STEP_SHARE`), with early
  stopping after ``patience`` checks. On a CPU without an explicit budget, training gets :data:`CPU_MINUTES`
  of wall time (more for large labelled windows, less for small ones: :data:`CPU_SMALL_AREA`), and the warm-up and
  cosine schedule follow the clock when the time runs out before the steps;
  that default budget holds for the whole run (:data:`AFTER_LOOP_MINUTES` more for pixel features and heads,
  whose time is measured before the loop: :class:`~carl_geo.polygon_training.carl_model.RunBudget`);
* **patch size**: 4 px when the median training polygon is at least 8 px across, else 2 px (a patch
  must fit inside the typical polygon so that pure patches exist);
* **chip size**: about 16 patches across, never more than the labelled window;
* **band subsets**: in 70 % of the steps (1 - ``full_band_share``) each training sample of a multispectral
  raster sees a random subset of its bands, between ``min`` and ``max`` bands, in the others all bands.
  This is the augmentation that makes the model camera agnostic (a 13-band model then also maps the
  scene from 4 bands);
* **many bands**: a raster with more than ``max_bands`` bands (hyperspectral) is reduced to broader
  bands by averaging neighbouring bands (:mod:`carl_geo.models.spectral_binning`) into the
  ``max_bands`` equal bins that prediction uses. With an explicit ``band_subset``, 1 - ``full_band_share``
  of the steps use a random binning into ``max_bands / 2`` to ``max_bands`` bands instead (a
  random broad-band camera); by default not: on the generated 160-band scene of the tests (pixels
  mode, 800 steps) random binning scored mIoU 0.33, equal bins 0.50 (forest 0.49). Neighbouring narrow bands are strongly
  correlated, so little is lost, and the cost of a step stays bounded whatever the band count.
  (Random subsets of a few narrow bands were tried first: on the generated 200-band scene they
  missed the narrow absorption features that separate similar classes.)
"""

from __future__ import annotations

import math
import argparse
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal, get_args

from carl_geo.errors import CarlGeoError, check_choice
from carl_geo.models.names import (CONFIG_NAMES, HEAD_NAMES, SELECT_NAMES, TRAINING_MODE_NAMES, ConfigName, HeadName,
                                   SelectName, TrainingModeName)
from carl_geo.settings_options import option_meta

#: What a run keeps (:attr:`TrainingRecipe.keep`): the average of the last quarter's checkpoints, or the best one.
KeepName = Literal["average", "best"]
KEEP_CHOICES: tuple[KeepName, ...] = get_args(KeepName)
#: Normalisation scopes: one scalar mean/std of the whole scene (stored in the model), or of each chip/tile.
NormalizationName = Literal["scene", "chip"]
NORMALIZATIONS: tuple[str, ...] = get_args(NormalizationName)


def parse_band_subset(value: str) -> tuple[int, int] | None | str:
    """``MIN,MAX`` (or ``MIN-MAX``, or one count) -> (min, max); ``auto``; ``none`` / ``off`` / ``all`` -> None."""
    v = value.strip().lower()
    if v == "auto":
        return "auto"
    if v in ("none", "off", "all"):
        return None
    try:
        parts = [int(x) for x in v.replace("-", ",").split(",") if x.strip()]
    except ValueError:
        parts = []
    if len(parts) == 1:
        parts = parts * 2
    if len(parts) != 2 or not 1 <= parts[0] <= parts[1]:
        raise argparse.ArgumentTypeError(f"--band-subset takes MIN,MAX band counts (e.g. 3,24), 'auto' or 'none', "
                                         f"got {value!r}")
    return parts[0], parts[1]

#: Training band subsets: at least this many bands (a 3-band camera is the smallest one CARL should serve).
MIN_TRAIN_BANDS = 3
#: A class with fewer labelled pixels than this gets a notice (few chips can be centred on it).
FEW_PIXELS = 50
#: Steps per run by default, and the floor when labels are scarce.
DEFAULT_STEPS = 400
#: Default wall-time budget (minutes) of the training loop on a CPU when no step or time budget is given
#: (chips; pixels mode, chosen for hyperspectral rasters, gets CPU_MINUTES_PIXELS: 394 steps in 2.5 min on
#: one core gave mIoU 0.401 on the generated 200-band scene).
CPU_MINUTES = 2.5
CPU_MINUTES_PIXELS = 4.0
#: Chips mode on a CPU: a labelled window larger than CPU_MINUTES_AREA pixels gets proportionally more time
#: and steps, up to CPU_MAX_MINUTES. Sentinel-2 (1.2 Mpx window, 366 polygons): the CARL model alone scored mIoU
#: 0.12-0.21 after 2.5 min, 0.264 after 8 min (1106 steps); its class probabilities feed the pixel heads, which take
#: about a minute more there, so the loop gets 6 min and the whole run stays within 8.
CPU_MINUTES_AREA = 250_000
CPU_MAX_MINUTES = 6.0
#: Chips mode on a CPU: a labelled window smaller than CPU_SMALL_AREA pixels holds few distinct chips and gets
#: proportionally less time and steps, at least CPU_MIN_MINUTES. Measured on 8 small windows cut from the NC and
#: Sentinel-2 scenes (64 and 128 px, ``benchmarks/bench_small_scenes.py``), the kept model's mean mIoU (seed 0)
#: after 0.4 min of loop (about 45 steps) 0.253, after 1 min 0.240, after 2.5 min 0.237, with this rule 0.248
#: (seed 1: 0.249); forest 0.212, forest + context 0.222 (seed 1: 0.212 / 0.224). There the pixel heads carry the
#: map and more steps of the chip model add nothing; on 256 px windows (65,536 px) 2.5 min still beat 1 min
#: (0.200 against 0.170).
CPU_SMALL_AREA = 65_536
CPU_MIN_MINUTES = 0.4
#: With that default CPU budget the whole run (loop, pixel features, heads) ends within the loop's minutes plus
#: these: the loop ends early enough to leave the pixel features and heads their measured time (a published
#: backbone's feature pass takes 68 s on the Sentinel-2 window on 2 cores, the heads 53 s: 490 s in all before).
AFTER_LOOP_MINUTES = 2.0
#: The kept model is the best validation checkpoint from this share of the budget on, and early stopping
#: compares only those (:class:`~carl_geo.polygon_training.checkpoints.BestCheckpoint`): validation on a few
#: held-out polygons is noisy, and early bests won (NC: step 80 of 400 gave mIoU 0.17 instead of 0.28; step
#: 120 of 280 gave 0.238 where a full run's step 320 gave 0.325).
MIN_STEP_SHARE = 0.5
#: ``keep="average"`` averages the model states of the checks from this share of the budget on (three states with
#: a check every tenth). Held-out mIoU per rule, one run per seed with every check scored (2 CPU cores): NC seeds
#: 0-3 best validation checkpoint 0.283 (0.253-0.308), last state 0.307 (0.268-0.323), average from 0.5 0.317
#: (0.284-0.333), from 0.75 0.310 (0.275-0.327); Sentinel-2 seed 0 0.196 / 0.253 / 0.244 / 0.252; generated
#: 200-band scene seed 0 0.508 / 0.548 / 0.515 / 0.539: the two slower-learning scenes still improve in the
#: second half, so the average starts late.
AVERAGE_FROM_SHARE = 0.75
#: Cost of a step ~ batch x tokens per chip x (bands + TOKEN_OVERHEAD): the spectral encoder grows with the
#: bands, the spatial encoder and the head do not. Budget per step on a CPU (8 chips of 16 x 16 tokens
#: with 13 bands: about 0.5 s on one core), and on a GPU; the batch is clamped to 4..32 (CPU) or 4..64 (GPU).
TOKEN_OVERHEAD = 8
CPU_STEP_BUDGET = 8 * 16 * 16 * (13 + TOKEN_OVERHEAD)
GPU_STEP_BUDGET = 16 * CPU_STEP_BUDGET


#: Steps by default in ``"pixels"`` mode (a step is cheaper; 150 steps left the generated scene at mIoU 0.11).
PIXEL_STEPS = 1500
#: Pixels per step in ``"pixels"`` mode on a CPU (x GPU_PIXEL_FACTOR on a GPU).
PIXEL_BATCH = 512
GPU_PIXEL_FACTOR = 8


#: ``"pixels"`` is the default mode for rasters with more bands than this (hyperspectral), small polygons
#: (median width < 8 px) and at most PIXEL_MAX_SCENE pixels (a pixel model predicts every pixel through the
#: backbone: about 5,000 px/s per CPU core with 24 bands).
PIXEL_MIN_BANDS = 24
PIXEL_MAX_SCENE = 4_000_000




@dataclass(frozen=True)
class SceneFacts:
    """What :func:`plan_recipe` needs to know about a training scene.

    Attributes:
        n_bands: bands of the raster that are used.
        window: (H, W) pixels of the labelled window read from the raster.
        scene: (H, W) pixels of the whole raster.
        class_pixels: labelled valid pixels per class (training + validation), class order.
        polygon_widths: square root of each polygon's area in pixels (its typical width, px).
        device: ``"cpu"``, ``"cuda"`` or ``"mps"``.
    """

    n_bands: int
    window: tuple[int, int]
    scene: tuple[int, int]
    class_pixels: tuple[int, ...]
    polygon_widths: tuple[float, ...]
    device: str = "cpu"

    @property
    def median_polygon_width(self) -> float:
        """Median of :attr:`polygon_widths` (px); 8 when there is none."""
        widths = sorted(self.polygon_widths) or [8.0]
        return widths[len(widths) // 2]

    @property
    def labelled_share(self) -> float:
        """Labelled pixels / pixels of the whole scene."""
        return sum(self.class_pixels) / max(1, self.scene[0] * self.scene[1])


@dataclass(frozen=True)
class TrainingRecipe:
    """Settings of one polygon-training run. ``None`` means "derive from the scene" (:func:`plan_recipe`).

    Attributes:
        mode: ``"chips"`` (the model sees image chips: spatial context, patch 2-4), ``"pixels"`` (each
            pixel classified from its own spectrum: patch 1, batches of single pixels, a pixelwise
            :class:`~carl_geo.models.CARLSegmenter`) or ``"auto"`` (:func:`plan_recipe` decides).
        config: backbone size (:data:`carl_geo.models.CONFIGS`), ``"tiny"`` for CPUs.
        head: segmentation head (:data:`carl_geo.models.segmentation.HEADS`).
        patch_size: backbone patch side (px) when training from scratch.
        chip_size: training chip side (px, multiple of the patch size).
        batch_size: chips (pixels in ``"pixels"`` mode) per optimiser step.
        max_steps: optimiser steps at most.
        max_minutes: wall-time budget of the training loop (None: steps only; on a CPU, when neither
            ``max_steps`` nor ``max_minutes`` is given, :data:`CPU_MINUTES`, more for labelled windows
            larger than :data:`CPU_MINUTES_AREA` pixels, at most :data:`CPU_MAX_MINUTES`, less for windows
            smaller than :data:`CPU_SMALL_AREA` pixels, at least :data:`CPU_MIN_MINUTES`).
        lr: peak learning rate (AdamW, linear warm-up then cosine decay).
        weight_decay: AdamW weight decay.
        warmup: share of ``max_steps`` spent warming up.
        band_subset: ``(min, max)`` bands per training sample of a raster with at most ``max_bands``
            bands (random subsets), ``None`` = all bands always.
        full_band_share: share of training batches that see all bands when ``band_subset`` is on (the
            others see a random subset): subsets alone slowed learning on Sentinel-2 (mIoU 0.115 after
            200 steps vs 0.222 with all bands after 400), all bands alone made the 4-band prediction
            collapse (0.066). With the 8-minute budget, 0.3 beat 0.5 on Sentinel-2 (seeds 0 / 1: mIoU
            0.260 / 0.253 vs 0.263 / 0.222; 4 bands 0.193 / 0.210 vs 0.181 / 0.177) and on NC (0.352 / 0.309
            vs 0.315 / 0.334, mean 0.331 vs 0.324); see the README table.
        max_bands: the model sees at most this many bands: a raster with more is binned (random
            bins in training, equal bins at prediction; stored in the model). None: no limit.
        normalization: ``"scene"`` (one scalar mean/std of the scene, stored in the model and used
            for every tile) or ``"chip"`` (each chip / tile by its own scalar mean/std, as upstream).
        class_weights: weight the loss by inverse square-root class frequency (on top of the
            class-balanced chip sampling).
        intensity_jitter: brightness/contrast augmentation of normalised chips (0: off).
        val_fraction: share of each class's labelled pixels held out (whole polygons) for validation,
            early stopping and the report. 0 trains on every polygon, and the report then scores the training
            polygons (a fit, not an accuracy). Measured with 0 against 0.25 (2 CPU cores, seeds 0 / 1, same day):
            Sentinel-2 mIoU 0.271 / 0.287 against 0.243 / 0.260, but NC 0.310 / 0.323 against 0.343 / 0.322
            (water IoU 0.49 / 0.41 fell to 0.23 / 0.36: NC has four water polygons of 4-83 px).
        val_every: steps between validations (with a time budget that runs ahead of the steps: the same share of
            the time budget, one cadence either way).
        keep: which model the run keeps: ``"average"`` (the mean of the model states at the validation checks
            of the last quarter of the budget, :data:`AVERAGE_FROM_SHARE`; the run uses its whole budget) or
            ``"best"`` (the best validation checkpoint from half the budget on, :data:`MIN_STEP_SHARE`, with early
            stopping after ``patience`` checks without improvement).
        patience: with ``keep="best"``: validations without improvement before stopping early (only those from
            half the budget on count).
        select: which candidate model the run keeps (:mod:`~carl_geo.polygon_training.candidates`): ``"auto"``
            (``"carl_ensemble"``, unless another CARL candidate or a plain forest is clearly better on the held-out
            polygons, :func:`~carl_geo.polygon_training.candidates.choose`), or a candidate's name: ``"rf"``,
            ``"rf_context"``, ``"carl"`` (the CARL model alone, as before the pixel heads; no heads are fitted),
            ``"carl_forest"``, ``"carl_mlp"``, ``"carl_ensemble"``.
        seed: seeds the split, the chips, the band subsets, the model initialisation and the heads.

    Every field is checked when the recipe is made (:class:`~carl_geo.errors.CarlGeoError` naming the field).
    """

    mode: TrainingModeName = field(default="auto", metadata=option_meta(
        None, "CARL model: chips (spatial context) or pixels (each pixel from its own spectrum); auto: pixels for "
        f"rasters with more than {PIXEL_MIN_BANDS} bands, small polygons and at most {PIXEL_MAX_SCENE / 1e6:g} Mpx, "
        "else chips"))
    config: ConfigName = field(default="tiny", metadata=option_meta(None, "CARL size (default tiny)"))
    head: HeadName = field(default="progressive", metadata=option_meta(None, "the CARL model's segmentation head"))
    patch_size: int | None = field(default=None, metadata=option_meta(
        None, "backbone patch size in pixels (default: 2 or 4 from the polygon sizes)", parse=int))
    chip_size: int | None = field(default=None, metadata=option_meta(
        None, "training chip side in pixels (default: 16 patches)", parse=int))
    batch_size: int | None = field(default=None, metadata=option_meta(
        None, "chips per step (default: from the band count and chip size)", parse=int))
    max_steps: int | None = field(default=None, metadata=option_meta(
        None, f"optimiser steps at most (default {DEFAULT_STEPS}, {PIXEL_STEPS} in pixels mode; more on a CPU for "
        f"labelled areas above {CPU_MINUTES_AREA / 1e6:g} Mpx; the CARL model kept is the average of the last "
        "quarter's checkpoints)", parse=int))
    max_minutes: float | None = field(default=None, metadata=option_meta(
        None, f"wall-time budget of the CARL training loop (default on a CPU without --max-steps: {CPU_MINUTES:g}, "
        f"growing with the labelled area above {CPU_MINUTES_AREA / 1e6:g} Mpx up to {CPU_MAX_MINUTES:g}, shrinking "
        f"below {CPU_SMALL_AREA:,} px down to {CPU_MIN_MINUTES:g}; "
        f"{CPU_MINUTES_PIXELS:g} in pixels mode; the whole run then ends within {AFTER_LOOP_MINUTES:g} min more, the "
        "loop leaving the pixel features and heads their measured time)", parse=float))
    lr: float = field(default=1e-3, metadata=option_meta(None, "peak learning rate (default 1e-3)", parse=float))
    weight_decay: float = 0.05
    warmup: float = 0.1
    band_subset: tuple[int, int] | None | Literal["auto"] = field(default="auto", metadata=option_meta(
        None, "random subsets of MIN..MAX bands per training chip, or 'none' (default: 3..all bands when the raster "
        f"has 4-{PIXEL_MIN_BANDS} bands; makes the CARL model work with fewer bands; with more than "
        f"{PIXEL_MIN_BANDS} bands, random binning into MIN..MAX broad bands)", metavar="MIN,MAX",
        parse=parse_band_subset))
    full_band_share: float = field(default=0.3, metadata=option_meta(
        None, "share of the steps that see all bands when band subsets are on (default 0.3)", metavar="SHARE",
        parse=float))
    max_bands: int | None = 24
    normalization: NormalizationName = field(default="scene", metadata=option_meta(
        None, "scalar mean/std of the whole scene (default, stored in the model) or of each chip/tile (the CARL "
        "model alone is kept then)"))
    class_weights: bool = False
    intensity_jitter: float = 0.0
    val_fraction: float = field(default=0.25, metadata=option_meta(
        None, "share of each class held out (whole polygons) to score and choose the candidates; 0 trains on every "
        "polygon (the candidates are then not compared: carl_ensemble is kept)", parse=float))
    val_every: int | None = None
    keep: KeepName = "average"
    patience: int = 4
    select: SelectName = field(default="auto", metadata=option_meta(
        None, "the model to keep: auto (the CARL ensemble, unless another candidate is clearly better on the held-out "
        "polygons), or one candidate: rf, rf_context, carl (the CARL model alone, no pixel heads), carl_forest, "
        "carl_mlp, carl_ensemble"))
    seed: int = field(default=0, metadata=option_meta(None, "seeds the split, the chips and the models", parse=int))

    def __post_init__(self) -> None:
        choices = {"mode": TRAINING_MODE_NAMES, "config": CONFIG_NAMES, "head": HEAD_NAMES, "keep": KEEP_CHOICES,
                   "normalization": NORMALIZATIONS, "select": SELECT_NAMES}
        for name, allowed in choices.items():
            check_choice(name, getattr(self, name), allowed)
        for name in ("max_steps", "batch_size", "patch_size", "chip_size", "val_every", "max_bands"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or int(v) != v or v < 1):
                raise CarlGeoError(f"{name} must be a positive integer, got {v!r}")
        if self.max_bands is not None and int(self.max_bands) < MIN_TRAIN_BANDS:
            raise CarlGeoError(f"max_bands must be >= {MIN_TRAIN_BANDS} or None, got {self.max_bands!r}")
        if self.max_minutes is not None and not self.max_minutes > 0:
            raise CarlGeoError(f"max_minutes must be > 0, got {self.max_minutes}")
        if not 0 <= self.val_fraction < 1:
            raise CarlGeoError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        if not 0 <= self.full_band_share <= 1:
            raise CarlGeoError(f"full_band_share must be in [0, 1], got {self.full_band_share}")
        for name in ("lr", "warmup", "weight_decay", "intensity_jitter"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0) or (name == "lr" and v == 0):
                raise CarlGeoError(f"{name} must be a {'positive' if name == 'lr' else 'non-negative'} number, got {v!r}")
        if not isinstance(self.patience, int) or self.patience < 1:
            raise CarlGeoError(f"patience must be a positive integer, got {self.patience!r}")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            raise CarlGeoError(f"seed must be an integer, got {self.seed!r}")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if isinstance(d["band_subset"], tuple):
            d["band_subset"] = list(d["band_subset"])
        return d

    def replace(self, **changes: Any) -> "TrainingRecipe":
        return replace(self, **changes)


@dataclass
class Plan:
    """A recipe with every field resolved, and the notices about what was adapted."""

    recipe: TrainingRecipe
    notices: list[str] = field(default_factory=list)
    #: Wall-time budget of the whole run (minutes) when the CPU default chose the loop's: the loop's minutes plus
    #: :data:`AFTER_LOOP_MINUTES`; None when the user set a step or time budget (theirs is the loop's alone).
    run_minutes: float | None = None


#: An old "epoch" was 64 chips (``epochs`` argument of ``train_from_polygons`` and ``carl-geo train --epochs``).
LEGACY_CHIPS_PER_EPOCH = 64


def steps_for_epochs(epochs: int, batch_size: int | None) -> int:
    """The one epochs-to-steps rule of the deprecated ``epochs``: ``epochs * 64 / batch_size`` steps (batch 8
    when not given), at least 1."""
    return max(1, round(int(epochs) * LEGACY_CHIPS_PER_EPOCH / (batch_size or 8)))


def pixels_suit(facts: SceneFacts) -> bool:
    """True where ``"pixels"`` mode is the default.

    Measured on the generated hyperspectral scene of the tests (160 bands, 6 classes, small fields): chip
    models overfit the few training fields (best mIoU 0.17, forest 0.49) while the pixel model reached 0.56
    after 1000 steps; on the multispectral scenes with large polygons chips win (NC: 0.349 vs forest 0.255).
    """
    return (facts.n_bands > PIXEL_MIN_BANDS and facts.median_polygon_width < 8
            and facts.scene[0] * facts.scene[1] <= PIXEL_MAX_SCENE)


def _pow2_at_most(x: float) -> int:
    return 1 << max(0, int(math.floor(math.log2(max(1.0, x)))))


def plan_recipe(facts: SceneFacts, recipe: TrainingRecipe | None = None, *, frozen: bool = False,
                backbone_patch: int | None = None) -> Plan:
    """Resolve every ``None`` / ``"auto"`` field of ``recipe`` for the scene ``facts``.

    Args:
        facts: the scene.
        recipe: user settings (defaults: :class:`TrainingRecipe()`); set fields are kept.
        frozen: a pretrained backbone is frozen (only the head trains).
        backbone_patch: the patch size of a given pretrained backbone (fixes ``patch_size``).

    Returns:
        :class:`Plan` with the resolved recipe and one-line notices.

    Raises:
        ValueError: settings that cannot work (explains what to change).
    """
    r = recipe or TrainingRecipe()
    notices: list[str] = []
    if r.chip_size is not None and (r.chip_size < 16 or r.chip_size % 8):
        raise CarlGeoError(f"chip_size must be a multiple of 8 and at least 16 pixels, got {r.chip_size}")
    h, w = facts.window
    short = min(h, w)
    c = facts.n_bands

    # mode: chips (spatial context) or pixels (spectra alone)
    mode = r.mode
    if mode == "auto":
        mode = "pixels" if backbone_patch is None and r.patch_size is None and pixels_suit(facts) else "chips"
    if mode == "pixels":
        if backbone_patch not in (None, 1) or r.patch_size not in (None, 1):
            raise CarlGeoError("mode 'pixels' needs patch size 1 (a pretrained backbone with another patch size "
                               "cannot classify single pixels): use mode 'chips'")
        if r.normalization != "scene":
            raise CarlGeoError("mode 'pixels' normalises with the scene's statistics: use normalization 'scene'")
        r = r.replace(head="linear")

    # patch size: pure patches must fit inside the typical polygon
    if mode == "pixels":
        patch = 1
    elif backbone_patch is not None:
        patch = backbone_patch
    elif r.patch_size is not None:
        patch = int(r.patch_size)
    else:
        patch = 4 if facts.median_polygon_width >= 8 else 2

    # bands: random subsets (multispectral) or random binning (more than max_bands bands)
    max_bands = r.max_bands
    seen = min(c, max_bands) if max_bands else c  # bands the model sees at most
    subset = r.band_subset
    if subset == "auto" and max_bands and c > max_bands:
        subset = None  # binned rasters train on the prediction bins (random bins: stress scene mIoU 0.33 vs 0.50)
    elif subset == "auto":
        subset = (min(MIN_TRAIN_BANDS, seen), seen) if seen > MIN_TRAIN_BANDS else None
    if subset is not None:
        lo, hi = int(subset[0]), int(subset[1])
        if not 1 <= lo <= hi:
            raise CarlGeoError(f"band_subset must be (min, max) with 1 <= min <= max, got {subset!r}")
        subset = (min(lo, seen), min(hi, seen))
        if subset == (c, c):
            subset = None
    if max_bands and c > max_bands:
        lo_bins = max(MIN_TRAIN_BANDS, max_bands // 2)
        notices.append(f"{c} bands: neighbouring bands are averaged into {lo_bins}-{max_bands} broader bands per "
                       f"training chip and into {max_bands} bands at prediction (max_bands={max_bands})")
    elif c > 64:
        notices.append(f"{c} bands and max_bands={max_bands}: every step processes all bands, expect slow steps")

    # chip size: ~16 patches across, within the labelled window (and a multiple of the patch size)
    chip = int(r.chip_size) if r.chip_size is not None else max(16, 16 * patch)  # pixels: validation chips
    chip = max(patch * 4, chip)
    if chip > short:
        fit = max(patch * 4, (short // patch) * patch)
        if fit < chip:
            notices.append(f"the labelled window ({h} x {w} px) is smaller than a {chip} px chip: "
                           f"training on {fit} px chips")
            chip = fit
    chip -= chip % patch
    if short < 8:
        raise CarlGeoError(f"the labelled area is only {h} x {w} px; a training chip needs at least 8 x 8 px: "
                         "draw polygons over a larger part of the raster or use a larger raster")

    # batch: a constant budget of band-tokens per step
    bands_per_sample = subset[1] if subset else seen
    gpu = facts.device in ("cuda", "mps")
    budget = GPU_STEP_BUDGET if gpu else CPU_STEP_BUDGET
    batch = r.batch_size
    if batch is None and mode == "pixels":
        batch = PIXEL_BATCH * (GPU_PIXEL_FACTOR if gpu else 1)
    elif batch is None:
        tokens = (chip // patch) ** 2
        batch = budget // max(1, tokens * (bands_per_sample + TOKEN_OVERHEAD))
        batch = int(min(64 if gpu else 32, max(4, batch)))

    steps = int(r.max_steps) if r.max_steps is not None else PIXEL_STEPS if mode == "pixels" else DEFAULT_STEPS
    minutes, run_minutes = r.max_minutes, None
    if minutes is None and r.max_steps is None and not gpu:
        if mode == "pixels":
            minutes = CPU_MINUTES_PIXELS
        else:  # the labelled window's distinct chips set the time and steps, within bounds
            if h * w < CPU_SMALL_AREA:
                factor = max(CPU_MIN_MINUTES / CPU_MINUTES, h * w / CPU_SMALL_AREA)
            else:
                factor = min(CPU_MAX_MINUTES / CPU_MINUTES, max(1.0, h * w / CPU_MINUTES_AREA))
            minutes, steps = round(CPU_MINUTES * factor, 1), max(1, round(DEFAULT_STEPS * factor))
            if factor > 1:
                notices.append(f"a labelled window of {h * w / 1e6:.1f} Mpx: training for up to {minutes:g} min on "
                               "the CPU (set max_minutes / --max-minutes to change; a GPU trains faster)")
            elif factor < 1:
                notices.append(f"a small labelled window ({h} x {w} px): training for up to {minutes:g} min on the "
                               f"CPU, where more time did not help small scenes (set max_minutes / --max-minutes "
                               "to change)")
        run_minutes = minutes + AFTER_LOOP_MINUTES
    val_every = int(r.val_every) if r.val_every is not None else max(10, steps // 10)

    # labels
    small = [i for i, n in enumerate(facts.class_pixels) if 0 < n < FEW_PIXELS]
    if small:
        notices.append(f"{len(small)} class(es) have fewer than {FEW_PIXELS} labelled pixels: they are sampled as "
                       "often as the others, but expect them to be the least accurate")
    if facts.labelled_share < 0.001:
        notices.append(f"labels cover {100 * facts.labelled_share:.3f} % of the scene: the map will be uncertain "
                       "away from the polygons; draw polygons over more of the scene if you can")

    resolved = r.replace(mode=mode, patch_size=patch, chip_size=chip, batch_size=batch, max_steps=steps, band_subset=subset,
                         val_every=val_every, max_minutes=minutes)
    return Plan(resolved, notices, run_minutes)
