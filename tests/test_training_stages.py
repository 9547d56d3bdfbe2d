"""Polygon training's stages one by one (issue #27): scene preparation, the batch source, the loop's hooks,
pixel features through the engine, the heads, the candidates' choice and the evidence table."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from carl_geo.datasets.vector_labels import IGNORE_INDEX
from carl_geo.errors import CarlGeoError
from carl_geo.inference.normalization import sample_windows, scene_statistics
from carl_geo.inference.predictor import read_window
from carl_geo.inference.settings import PredictSettings
from carl_geo.io.band_metadata import open_raster
from carl_geo.polygon_training.batches import ChipBatches
from carl_geo.polygon_training.candidates import (CANDIDATES, Candidate, HeldOut, choose, evidence_table,
                                                  fit_candidates, holdout_caveat, near_chance)
from carl_geo.polygon_training.carl_model import MIN_LOOP_SHARE, RunBudget, build_carl, train_carl
from carl_geo.polygon_training.heads import fit_forest, fit_mlp, head_probabilities
from carl_geo.polygon_training.loop import LoopHooks, RunDeadline, slowdown, train_loop
from carl_geo.polygon_training.metrics import confusion_matrix, segmentation_report
from carl_geo.polygon_training.pixel_features import (FeatureStack, columns, feature_pass_seconds, fit_context,
                                                      pixel_samples, stack_at)
from carl_geo.polygon_training.polygons import HEADS_MIN_SECONDS, HEADS_SECONDS, heads_seconds
from carl_geo.polygon_training.recipe import TrainingRecipe, plan_recipe
from carl_geo.polygon_training.scene import prepare_scene, split_scene
from carl_geo.sample_data import nc_landsat7, write_crop

SCENE = nc_landsat7()


@pytest.fixture(scope="module")
def crop(tmp_path_factory):
    return write_crop(SCENE, tmp_path_factory.mktemp("crop"), 112, 128, 160)


@pytest.fixture(scope="module")
def scene(crop):
    sc = prepare_scene(crop.image, crop.polygons, "label", margin=16)
    plan = plan_recipe(sc.facts, TrainingRecipe(chip_size=32, batch_size=4, max_steps=6, val_every=3))
    split_scene(sc, plan.recipe.val_fraction, block=8, seed=0)
    return sc, plan.recipe


def test_scene_reads_the_window_with_the_predictors_reader_and_statistics(crop, scene):
    sc, _ = scene
    with open_raster(crop.image) as src:
        raw, valid = read_window(src, sc.band_indexes, sc.window)
        mean, std = scene_statistics(lambda w: read_window(src, sc.band_indexes, w), sample_windows(src.height, src.width))
    np.testing.assert_array_equal(sc.valid, valid)
    np.testing.assert_array_equal(sc.image[:, valid], raw[:, valid].astype(np.float32))
    assert (sc.mean, sc.std) == (mean, std)
    assert sc.wavelengths == pytest.approx([0.485, 0.56, 0.66, 0.835, 1.65, 2.22])
    assert sc.n_classes == 5 and sc.n_train > 0 and sc.n_val > 0
    assert not ((sc.split.train != IGNORE_INDEX) & (sc.split.val != IGNORE_INDEX)).any()
    norm = sc.normalized()
    assert abs(float(norm[:, sc.valid].mean())) < 0.5 and (norm[:, ~sc.valid] == 0).all()


def test_recipe_is_checked_when_made():
    for bad, match in (({"mode": "tiles"}, "mode must be one of"), ({"max_steps": 0}, "max_steps must be a positive"),
                       ({"lr": 0.0}, "lr must be a positive"), ({"select": "svm"}, "select must be one of"),
                       ({"val_fraction": 1.0}, "val_fraction"), ({"max_bands": 2}, "max_bands must be >= 3")):
        with pytest.raises(CarlGeoError, match=match):
            TrainingRecipe(**bad)
    assert TrainingRecipe().replace(select="carl_mlp").select == "carl_mlp"


def test_batches_and_loop_hooks(scene):
    sc, recipe = scene
    batches = ChipBatches(sc, recipe)
    x, y, wl = batches.next()
    assert x.shape[0] == 4 and x.shape[-1] == 32 and y.shape == (4, 32, 32) and wl.shape[-1] == x.shape[1]
    assert "4 chips of 32 px" in batches.describe()
    torch.manual_seed(0)
    model, frozen = build_carl(sc.n_classes, recipe, None)
    steps, checks = [], []
    hooks = LoopHooks(on_step=lambda s, loss: steps.append((s, loss)),
                      on_check=lambda s, share, score, m: checks.append((s, score)))
    res = train_loop(model, batches, recipe, sc.n_classes, torch.device("cpu"), hooks=hooks)
    assert not frozen and res.steps == 6 and [s for s, _ in steps] == list(range(1, 7))
    assert all(np.isfinite(loss) for _, loss in steps)
    assert [s for s, _ in checks] == [3, 6] and all(0 <= v <= 1 for _, v in checks)
    assert res.averaged_steps and res.stop_reason == "step budget" and not model.training


class FakeClock:
    """``time.perf_counter`` for the loop: steps and validations take fixed seconds, whatever the machine's load."""

    def __init__(self) -> None:
        self.now = 1000.0

    def perf_counter(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch):
    """Steps of 0.25 s and validations of 0.1 s on a fake clock (the loop's and train_carl's)."""
    import carl_geo.polygon_training.carl_model as carl_model
    import carl_geo.polygon_training.loop as loop

    fake = FakeClock()
    fake.val_seconds = [0.1]  # seconds of the next validations (the last one repeats)
    monkeypatch.setattr(loop, "time", fake)
    monkeypatch.setattr(carl_model, "time", fake)

    def validation(*_args, **_kwargs):
        fake.now += fake.val_seconds.pop(0) if len(fake.val_seconds) > 1 else fake.val_seconds[0]
        return 0.5

    monkeypatch.setattr(loop, "validation_miou", validation)

    def step(_s, _loss):
        fake.now += 0.25

    return fake, LoopHooks(on_step=step)


def test_a_time_budget_is_a_deadline(scene, clock):
    """The loop stops after the step whose successor (and its closing validation) would end past the deadline,
    instead of overrunning it by a step and a validation; a run deadline ends it earlier, with its own reason."""
    sc, recipe = scene
    fake, steps = clock
    batches = ChipBatches(sc, recipe)
    for budget_s, run_end, reason in ((3.0, None, "time budget of 0.05 min"),
                                      (60.0, 3.0, "time budget of 8 min for the whole run")):
        torch.manual_seed(0)
        model, _ = build_carl(sc.n_classes, recipe, None)
        t = fake.now
        run = None if run_end is None else RunDeadline(t + run_end, 0.0, t, "time budget of 8 min for the whole run")
        res = train_loop(model, batches, recipe.replace(max_steps=1000, max_minutes=budget_s / 60, val_every=4),
                         sc.n_classes, torch.device("cpu"), hooks=steps, run_deadline=run)
        assert res.stop_reason == reason and 2 <= res.steps < 1000
        assert 3.0 - 0.25 - 0.1 < fake.now - t <= 3.0  # before: 3.35 (a step and a validation past it)
        assert res.averaged_steps  # the closing step was validated and kept
    # validations dearer than steps, one due at every step: the one due now counts too (the published backbone's
    # validations of 20 s ran 8 s past the deadline before)
    fake.val_seconds = [1.0]
    t = fake.now
    res = train_loop(model, batches, recipe.replace(max_steps=1000, max_minutes=0.1, val_every=1), sc.n_classes,
                     torch.device("cpu"), hooks=steps)
    assert res.stop_reason == "time budget of 0.1 min" and 6.0 - 0.25 - 2 * 1.0 < fake.now - t <= 6.0


def test_a_machine_that_slows_down_reserves_more_for_after_the_loop(scene, clock):
    """Validations are the same work every time: when the recent ones take twice as long as the first ones, the work
    after the loop (3 s, measured at the start) is reserved twice over: the loop ends by 10 - 6 s, not 10 - 3 s."""
    sc, recipe = scene
    fake, steps = clock
    fake.val_seconds = [0.1, 0.1, 0.1, 0.2]
    torch.manual_seed(0)
    model, _ = build_carl(sc.n_classes, recipe, None)
    t = fake.now
    run = RunDeadline(t + 10.0, 3.0, t, "time budget of 0.2 min for the whole run")
    res = train_loop(model, ChipBatches(sc, recipe), recipe.replace(max_steps=1000, max_minutes=1.0, val_every=1),
                     sc.n_classes, torch.device("cpu"), hooks=steps, run_deadline=run)
    assert res.stop_reason == "time budget of 0.2 min for the whole run"
    assert 4.0 - 0.25 - 0.2 < fake.now - t <= 4.0
    assert run.at(1.0) == t + 7.0 and run.at(0.5) == t + 7.0 and run.at(100) == t  # never before the floor
    # one slow validation is jitter, not a slower machine; the factor is capped
    assert slowdown([0.1, 0.1, 0.1, 0.1, 0.1, 0.5]) == 1.0 and slowdown([1, 1, 1, 2, 2]) == 1.0
    assert slowdown([1, 1, 1, 2, 2, 2]) == 2.0 and slowdown([1, 1, 1, 5, 5, 5]) == 2.0


def test_a_run_budget_leaves_the_work_after_the_loop_its_measured_time(scene, clock):
    sc, recipe = scene
    fake, steps = clock
    lines: list[str] = []
    r = recipe.replace(max_steps=1000, max_minutes=0.1, val_every=4)  # the loop's own budget: 6 s
    # 6 s loop + 3 s after it in a 5 s run: the loop keeps MIN_LOOP_SHARE of its budget, and says so
    t = fake.now
    _, res = train_carl(sc, r, None, torch.device("cpu"), log=lines.append, hooks=steps,
                        budget=RunBudget(t + 5.0, 5 / 60, lambda model: 3.0))
    assert res.stop_reason == "time budget of 0.0833333 min for the whole run"
    assert MIN_LOOP_SHARE * 6 - 0.35 < fake.now - t <= MIN_LOOP_SHARE * 6
    assert any("pixel features and heads take about 0.1 min" in ln and "longer than its" in ln for ln in lines)
    # room for both: the loop trains until the run's end less the measured work after it
    lines.clear()
    t = fake.now
    _, res = train_carl(sc, r, None, torch.device("cpu"), log=lines.append, hooks=steps,
                        budget=RunBudget(t + 8.0, 8 / 60, lambda model: 3.0))
    assert 5.0 - 0.35 < fake.now - t <= 5.0 and "for the whole run" in res.stop_reason
    assert any("leaving 0.1 min of the 0.133333-min run" in ln for ln in lines)
    # a run budget with room to spare changes nothing
    lines.clear()
    _, res = train_carl(sc, r.replace(max_minutes=0.5, max_steps=3), None, torch.device("cpu"), log=lines.append,
                        budget=RunBudget(fake.now + 60, 1, lambda model: 1.0))
    assert res.stop_reason == "step budget" and not any(ln.startswith("note:") for ln in lines)


def test_heads_reserve_scales_with_the_head_work():
    """The seconds a run budget keeps for the pixel heads: 90 s at the Sentinel-2 bench's head work (sample caps,
    60 features), the floor on a NC-sized scene (1,400 / 508 pixels, 30 features), more with more pixels or
    features, and the sample caps bound the pixels."""
    assert heads_seconds(187_759, 62_591, 60) == pytest.approx(HEADS_SECONDS)
    assert heads_seconds(1_400, 508, 30) == HEADS_MIN_SECONDS == 20.0
    assert heads_seconds(40_000, 100_000, 60) == pytest.approx(HEADS_SECONDS * 140_000 / 102_591)
    assert heads_seconds(40_000, 100_000, 276) == pytest.approx(heads_seconds(40_000, 100_000, 60) * (276 / 60) ** 0.5)
    assert heads_seconds(10**7, 10**7, 60) == heads_seconds(40_000, 100_000, 60)


def test_feature_pass_estimate_scales_one_tile_to_every_tile(scene):
    """The estimate times one tile through the engine and scales it to the window's tiles: with a model whose
    every call takes 0.1 s, it matches the whole pass."""
    sc, recipe = scene
    torch.manual_seed(0)
    carl, _ = build_carl(sc.n_classes, recipe, None)
    image = sc.normalized()
    calls = []

    def slow_forward(module, args, output):
        calls.append(1)
        time.sleep(0.1)

    handle = carl.register_forward_hook(slow_forward)
    try:
        stack = FeatureStack(fit_context(sc, image), carl)
        settings = PredictSettings(tile_size=64, overlap=24, batch_size=1)
        estimate = feature_pass_seconds(stack, image, sc.valid, sc.wavelengths, torch.device("cpu"), settings)
        n_estimate = len(calls)
        t = time.perf_counter()
        stack_at(stack, image, sc.valid, sc.wavelengths, np.arange(sc.valid.size), torch.device("cpu"), settings)
        whole = time.perf_counter() - t
    finally:
        handle.remove()
    assert n_estimate == 1 and len(calls) - n_estimate > 4  # one tile of the window's many
    assert 0.7 * whole <= estimate <= 2.0 * whole, (estimate, whole)  # errs long (one call's set-up x tiles)


def test_pixel_features_equal_the_stack_on_the_whole_window(scene):
    sc, recipe = scene
    torch.manual_seed(0)
    carl, _ = build_carl(sc.n_classes, recipe, None)
    carl.eval()
    image = sc.normalized()
    ctx = fit_context(sc, image)
    stack = FeatureStack(ctx, carl)
    train, val = pixel_samples(sc, stack, image, torch.device("cpu"), train_pixels=300, val_pixels=200, seed=0)
    assert train.features.shape == (300, ctx.out_channels + sc.n_classes) and len(val) == min(200, sc.n_val)
    assert (train.labels == sc.split.train.ravel()[train.index]).all()
    np.testing.assert_allclose(train.features[:, -sc.n_classes:].sum(1), 1, atol=1e-5)
    # with one tile over the whole window, the engine's features are the stack's on the window (away from its
    # border, where the engine reflects the image and the direct call clips the windows)
    with torch.no_grad():
        whole = stack(torch.from_numpy(image)[None], torch.tensor(sc.wavelengths))[0].numpy()
    h, w = sc.valid.shape
    rows, cols = np.divmod(train.index, w)
    inner = train.index[(rows >= 24) & (rows < h - 24) & (cols >= 24) & (cols < w - 24)][:200]
    one = stack_at(stack, image, sc.valid, sc.wavelengths, inner, torch.device("cpu"),
                   PredictSettings(tile_size=256, overlap=32))
    np.testing.assert_allclose(one, whole.reshape(whole.shape[0], -1)[:, inner].T, atol=2e-4)
    # the default tiles (overlap >= twice the context reach) stay close to it
    tiled = stack_at(stack, image, sc.valid, sc.wavelengths, inner, torch.device("cpu"))
    assert np.abs(tiled[:, :ctx.out_channels] - one[:, :ctx.out_channels]).mean() < 0.05
    assert columns(ctx, "bands") == slice(0, 6) and columns(ctx, "context") == slice(0, ctx.out_channels)


def test_the_chips_share_the_callers_normalised_image(scene):
    """train_from_polygons hands its normalised window to the chips instead of a second copy (hundreds of MB on a
    hyperspectral window): the same values, the same memory, and normalized() is normalize()'s formula."""
    from carl_geo.transforms import normalize

    sc, recipe = scene
    assert recipe.normalization == "scene"
    image = sc.normalized()
    np.testing.assert_array_equal(image, np.where(sc.valid, normalize(sc.image, sc.mean, sc.std), 0.0))
    shared = ChipBatches(sc, recipe, image)
    assert np.shares_memory(shared.image.numpy(), image)
    np.testing.assert_array_equal(shared.image.numpy(), ChipBatches(sc, recipe).image.numpy())


def test_the_context_fit_holds_fewer_pixels_of_many_bands(scene, monkeypatch):
    """The principal components are fitted on at most FIT_VALUES pixel x band values (float64 copies are made): all
    sampled pixels up to FIT_PIXELS for multispectral bands, fewer of a hyperspectral window; the same components
    from a smaller sample where the bands are few."""
    import carl_geo.polygon_training.pixel_features as pf
    from carl_geo.models.context_features import ContextFeatures

    sc, _ = scene
    image = sc.normalized()
    seen: list[tuple[int, int]] = []
    fit = ContextFeatures.fit
    monkeypatch.setattr(ContextFeatures, "fit", lambda self, px: (seen.append(tuple(px.shape)), fit(self, px))[1])
    every = pf.fit_context(sc, image)
    assert seen[-1] == (int(sc.valid.sum()), 6)  # a small multispectral window: every valid pixel
    monkeypatch.setattr(pf, "FIT_VALUES", 6 * 2000)
    fewer = pf.fit_context(sc, image)
    assert seen[-1] == (2000, 6)
    cos = torch.nn.functional.cosine_similarity(every.components[:3], fewer.components[:3], dim=1).abs()
    assert (cos > 0.95).all(), cos  # the leading components barely move


def test_heads_learn_a_separable_problem():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2000, 5)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64) + (x[:, 1] > 0)
    for fit in (fit_forest, fit_mlp):
        head = fit(x[:1500], y[:1500], 3, seed=0)
        p = head_probabilities(head, x[1500:])
        assert p.shape == (500, 3) and np.allclose(p.sum(1), 1, atol=1e-3)
        assert (p.argmax(1) == y[1500:]).mean() > 0.9, fit.__name__


def _held_out(n_polygons: int = 12, per: int = 50, k: int = 3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Classes and polygon ids of held-out pixels: ``n_polygons`` polygons of ``per`` pixels, classes in turn."""
    groups = np.repeat(np.arange(n_polygons), per)
    return groups % k, groups


def _cand(name: str, labels: np.ndarray, groups: np.ndarray, wrong: set[int], k: int = 3) -> Candidate:
    """A candidate that gets every pixel right except those of the polygons in ``wrong``."""
    spec = next(c for c in CANDIDATES if c.name == name)
    pred = np.where(np.isin(groups, list(wrong)), (labels + 1) % k, labels)
    rep = segmentation_report(confusion_matrix(labels, pred, k), ["a", "b", "c"])
    return Candidate(spec, [], rep, 1.0, 10 if spec.heads else 0, pred)


def test_choose_keeps_the_ensemble_unless_a_candidate_is_clearly_better():
    labels, groups = _held_out()
    held = HeldOut(labels, groups, 3)
    names = ("rf", "rf_context", "carl", "carl_forest", "carl_mlp", "carl_ensemble")
    # close calls (one polygon apart): the ensemble stays
    close = [_cand(n, labels, groups, w) for n, w in zip(names, ({0, 1, 2, 3}, {0}, {0, 1, 2, 3, 4}, {1}, {2, 3},
                                                                  {4, 5}))]
    kept, why = choose(close, held_out=held)
    assert kept.name == "carl_ensemble" and why.startswith("the default") and "best plain forest rf_context" in why
    assert "not clearly better" in why and "--select rf_context" in why
    # a CARL candidate right on every polygon where the ensemble misses six: clearly better
    better = [*close[:3], _cand("carl_forest", labels, groups, set()), *close[4:5],
              _cand("carl_ensemble", labels, groups, {0, 1, 2, 3, 4, 5})]
    kept, why = choose(better, held_out=held)
    assert kept.name == "carl_forest" and "better than carl_ensemble" in why
    # a CARL model that failed: the forest + context wins on (nearly) every resample and is kept, saying why
    failed = [close[0], _cand("rf_context", labels, groups, set())] + [
        _cand(n, labels, groups, set(range(10))) for n in names[2:]]
    kept, why = choose(failed, held_out=held)
    assert kept.name == "rf_context" and "plain forest" in why and "maps these polygons better" in why
    assert choose(close, "carl_mlp")[0].name == "carl_mlp"
    lines = evidence_table([c.row() for c in close], "carl_ensemble")
    assert len(lines) == 7 and lines[0].startswith("candidate") and lines[6].endswith("<- kept")
    assert "forest+mlp" in lines[6] and "-" in lines[3].split()


def test_held_out_resampling_counts_whole_polygons():
    labels, groups = _held_out(n_polygons=6, per=10)
    held = HeldOut(labels, groups, 3, seed=1)
    perfect, off = labels, np.where(groups == 0, (labels + 1) % 3, labels)
    share = held.share_better(perfect, off, gain=0.01)  # resamples without polygon 0 are ties: no win
    assert 0.55 < share < 0.8  # polygon 0 is drawn with probability 1 - (5/6) ** 6 = 0.67
    assert held.share_better(off, perfect, gain=0.01) == 0.0 and held.share_better(perfect, perfect, gain=0.0) == 1.0


def test_a_run_cut_short_by_the_clock_says_what_to_raise():
    from carl_geo.polygon_training.polygons import cut_short

    note = cut_short(43, 400, "time budget of 2.5 min")
    assert "after 43 of 400 steps" in note and "--max-minutes" in note and "Training time at most" in note
    assert cut_short(300, 400, "time budget of 2.5 min") is None and cut_short(43, 400, "step budget") is None


def test_near_chance_says_so():
    assert near_chance({"mean_iou": 0.05, "overall_accuracy": 0.1}, 13) is not None
    assert "near chance" in near_chance({"mean_iou": 0.1, "overall_accuracy": 0.3}, 6)
    assert near_chance({"mean_iou": 0.4, "overall_accuracy": 0.7}, 6) is None


def test_a_class_with_one_polygon_gets_the_caveat_that_its_scores_are_from_its_own_polygon():
    from carl_geo.polygon_training.chips import holdout_split

    mask = np.full((64, 64), -100, dtype=np.int64)
    ids = np.zeros((64, 64), dtype=np.int64)
    mask[0:20, 0:20], ids[0:20, 0:20] = 0, 1  # "water": two polygons
    mask[40:60, 0:20], ids[40:60, 0:20] = 0, 2
    mask[0:40, 30:60], ids[0:40, 30:60] = 1, 3  # "crop": one polygon, split into blocks
    split = holdout_split(mask, ids, ["water", "crop"], val_fraction=0.25, block=8)
    assert split.how == {"water": "polygons", "crop": "blocks"}
    note = holdout_caveat(split.how)
    assert note.startswith("1 of 2 classes (crop) have a single polygon") and "two or more polygons" in note
    assert holdout_caveat({"water": "blocks", "crop": "blocks"}).startswith("every class has a single polygon")
    assert holdout_caveat({"water": "polygons", "crop": "polygons"}) is None
    assert holdout_caveat({"water": "polygons", "crop": "train only"}) is None  # not scored at all: no such claim


def test_fit_candidates_scores_every_candidate_on_the_held_out_pixels():
    from carl_geo.polygon_training.pixel_features import PixelSample

    rng = np.random.default_rng(0)
    n, k = 1200, 3
    y = rng.integers(0, k, n)
    bands = rng.normal(size=(n, 4)) + y[:, None] * 0.8
    context = bands + rng.normal(size=(n, 4)) * 0.1
    p_carl = np.eye(k)[y] * 0.5 + 0.5 / k
    feats = np.concatenate([bands, context, p_carl], 1).astype(np.float32)
    train, val = PixelSample(feats[:800], y[:800], np.arange(800)), PixelSample(feats[800:], y[800:], np.arange(400))
    cols = {"bands": slice(0, 4), "context": slice(0, 8), "all": slice(0, None)}
    cands = fit_candidates(train, val, k, ["a", "b", "c"], cols.__getitem__, slice(8, None), seed=0)
    assert [c.name for c in cands] == [c.name for c in CANDIDATES]
    by = {c.name: c for c in cands}
    assert by["carl"].miou == pytest.approx(1.0) and by["carl"].heads == []
    assert by["carl_forest"].n_features == 11 and by["rf"].n_features == 4 and 0 < by["rf"].miou < 1
    # the ensemble reuses the forest and the MLP of carl_forest and carl_mlp (fitted once)
    assert by["carl_ensemble"].heads[0] is by["carl_forest"].heads[0] and by["carl_ensemble"].heads[1] is by["carl_mlp"].heads[0]
    assert by["carl_forest"].report == segmentation_report(np.asarray(by["carl_forest"].report["confusion_matrix"]),
                                                           ["a", "b", "c"])


def _with_pond(crop, scene, path, keep_classes=None):
    """The crop's polygons plus a 2 x 1 px polygon of a new class 'pond' on unlabelled pixels inside their extent."""
    import geopandas as gpd
    import pandas as pd
    from shapely.geometry import box

    mask = scene.mask
    rows, cols = np.nonzero(mask != IGNORE_INDEX)
    free = (mask[:, :-1] == IGNORE_INDEX) & (mask[:, 1:] == IGNORE_INDEX)
    free[: rows.min() + 1], free[rows.max():], free[:, : cols.min() + 1], free[:, cols.max() - 1:] = False, False, False, False
    r, c = (int(v[0]) for v in np.nonzero(free))
    with open_raster(crop.image) as src:
        t = src.window_transform(scene.window)
        crs = src.crs
    x0, y0 = t * (c, r)
    pond = box(x0, y0 + 1.0 * t.e, x0 + 2 * t.a, y0)  # pixels (r, c) and (r, c + 1)
    gdf = gpd.read_file(crop.polygons)
    if keep_classes is not None:
        gdf = gdf[gdf["label"].isin(keep_classes)]
    extra = gpd.GeoDataFrame({"label": ["pond"]}, geometry=[pond], crs=crs).to_crs(gdf.crs)
    pd.concat([gdf, extra], ignore_index=True).to_file(path)
    return path


def test_a_class_with_a_two_pixel_polygon_is_left_out_with_a_notice(crop, scene, tmp_path):
    sc0, _ = scene
    sc = prepare_scene(crop.image, _with_pond(crop, sc0, tmp_path / "pond.gpkg"), "label", margin=16)
    assert "pond" not in sc.class_names and sc.class_names == sc0.class_names
    assert [n for n in sc.notices if "'pond' (2 px)" in n and "left out" in n]
    np.testing.assert_array_equal(sc.mask, sc0.mask)  # the other classes' pixels are what they were
    # with one other class only, nothing is left to train: the error says what to change
    one = _with_pond(crop, sc0, tmp_path / "one.gpkg", keep_classes=[sc0.class_names[0]])
    with pytest.raises(CarlGeoError, match=r"'pond' \(2 px\) cover fewer than 4 valid raster pixels"):
        prepare_scene(crop.image, one, "label", margin=16)
