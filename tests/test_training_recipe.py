"""The scene-adaptive polygon-training recipe, band subsets and band-group prediction."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import carl_geo
from carl_geo.models import CARL, CARLSegmenter, tiny_config
from carl_geo.polygon_training.polygons import draw_band_subsets
from carl_geo.models.spectral_binning import apply_bins, bin_matrix, bin_spectra, equal_bins, random_bins
from carl_geo.polygon_training.recipe import SceneFacts, TrainingRecipe, plan_recipe


def facts(**kw) -> SceneFacts:
    base = dict(n_bands=6, window=(300, 300), scene=(400, 400), class_pixels=(500, 800, 300),
                polygon_widths=(10.0, 12.0, 20.0), device="cpu")
    return SceneFacts(**{**base, **kw})


def test_patch_chip_and_batch_follow_the_scene():
    big = plan_recipe(facts()).recipe
    assert big.patch_size == 4 and big.chip_size == 64 and big.band_subset == (3, 6) and big.max_bands == 24
    small_polys = plan_recipe(facts(polygon_widths=(4.0, 5.0, 7.0))).recipe
    assert small_polys.patch_size == 2 and small_polys.chip_size == 32
    # cost per step bounded: a 200-band raster is binned to <= 24 bands
    hsi = plan_recipe(facts(n_bands=200)).recipe
    assert hsi.max_bands == 24 and hsi.band_subset is None  # binned: the prediction bins
    assert plan_recipe(facts(n_bands=200), TrainingRecipe(band_subset=(3, 24))).recipe.band_subset == (3, 24)
    assert hsi.batch_size * (hsi.chip_size // hsi.patch_size) ** 2 * (24 + 8) <= 8 * 16 * 16 * 32
    gpu = plan_recipe(facts(device="cuda")).recipe
    assert gpu.batch_size > big.batch_size
    # user settings win over the derived ones
    mine = plan_recipe(facts(), TrainingRecipe(patch_size=8, chip_size=128, batch_size=3, band_subset=None)).recipe
    assert (mine.patch_size, mine.chip_size, mine.batch_size, mine.band_subset) == (8, 128, 3, None)


def test_small_scene_adapts_with_a_notice_and_a_tiny_one_fails():
    plan = plan_recipe(facts(window=(40, 50)))
    assert plan.recipe.chip_size == 40 and any("smaller than a 64 px chip" in n for n in plan.notices)
    with pytest.raises(ValueError, match="only 6 x 7 px"):
        plan_recipe(facts(window=(6, 7), polygon_widths=(2.0,)))


def test_notices_for_many_bands_rare_classes_and_sparse_labels():
    plan = plan_recipe(facts(n_bands=320, class_pixels=(20, 5000), scene=(10000, 10000)))
    text = " | ".join(plan.notices)
    assert "320 bands" in text and "averaged into 12-24 broader bands" in text
    assert "fewer than 50 labelled pixels" in text and "labels cover 0.005 %" in text
    unbinned = plan_recipe(facts(n_bands=320), TrainingRecipe(max_bands=None))
    assert any("expect slow steps" in n for n in unbinned.notices) and unbinned.recipe.band_subset == (3, 320)


def test_bad_recipe_values_are_refused():
    with pytest.raises(ValueError, match="normalization"):
        plan_recipe(facts(), TrainingRecipe(normalization="band"))
    with pytest.raises(ValueError, match="band_subset"):
        plan_recipe(facts(), TrainingRecipe(band_subset=(5, 2)))
    with pytest.raises(ValueError, match="full_band_share"):
        plan_recipe(facts(), TrainingRecipe(full_band_share=1.5))


def test_time_budget_applies_on_a_cpu_only_when_no_budget_is_given():
    from carl_geo.polygon_training.recipe import CPU_MINUTES

    assert plan_recipe(facts()).recipe.max_minutes == CPU_MINUTES
    assert plan_recipe(facts(device="cuda")).recipe.max_minutes is None
    steps_only = plan_recipe(facts(), TrainingRecipe(max_steps=50)).recipe
    assert steps_only.max_steps == 50 and steps_only.max_minutes is None
    assert plan_recipe(facts(), TrainingRecipe(max_minutes=9.0)).recipe.max_minutes == 9.0


def test_the_cpu_default_budget_covers_the_whole_run():
    """Only the CPU default's budget is a whole-run budget (the loop's minutes + AFTER_LOOP_MINUTES); a budget the
    user gives, steps or minutes, is the loop's alone, and a GPU has none."""
    from carl_geo.polygon_training.recipe import AFTER_LOOP_MINUTES, CPU_MAX_MINUTES, CPU_MINUTES_PIXELS

    auto = plan_recipe(facts())
    assert auto.run_minutes == pytest.approx(auto.recipe.max_minutes + AFTER_LOOP_MINUTES)
    assert plan_recipe(facts(window=(768, 1536), scene=(768, 1536))).run_minutes == CPU_MAX_MINUTES + AFTER_LOOP_MINUTES
    hsi = plan_recipe(facts(n_bands=200, window=(768, 1536), polygon_widths=(4.0,)))
    assert hsi.run_minutes == CPU_MINUTES_PIXELS + AFTER_LOOP_MINUTES
    for given in (TrainingRecipe(max_minutes=9.0), TrainingRecipe(max_steps=50)):
        assert plan_recipe(facts(), given).run_minutes is None
    assert plan_recipe(facts(device="cuda")).run_minutes is None


def test_cpu_time_budget_grows_with_the_labelled_window():
    """Chips mode on a CPU: time and steps scale with the labelled window above CPU_MINUTES_AREA pixels
    (linearly, capped at CPU_MAX_MINUTES), with a notice; a GPU and explicit budgets are unaffected."""
    from carl_geo.polygon_training.recipe import CPU_MAX_MINUTES, CPU_MINUTES, CPU_MINUTES_PIXELS, DEFAULT_STEPS

    small = plan_recipe(facts(window=(300, 300), scene=(300, 300)))
    assert (small.recipe.max_minutes, small.recipe.max_steps) == (CPU_MINUTES, DEFAULT_STEPS)
    assert not any("Mpx" in n for n in small.notices)
    double = plan_recipe(facts(window=(500, 1000), scene=(500, 1000)))  # 2 x 250,000 px
    assert double.recipe.max_minutes == pytest.approx(2 * CPU_MINUTES) and double.recipe.max_steps == 2 * DEFAULT_STEPS
    assert any("0.5 Mpx" in n and "max_minutes" in n for n in double.notices)
    s2 = plan_recipe(facts(window=(768, 1536), scene=(768, 1536))).recipe  # the Sentinel-2 scene: capped
    assert s2.max_minutes == CPU_MAX_MINUTES and s2.max_steps == round(DEFAULT_STEPS * CPU_MAX_MINUTES / CPU_MINUTES)
    assert plan_recipe(facts(window=(768, 1536), device="cuda")).recipe.max_minutes is None
    assert plan_recipe(facts(window=(768, 1536)), TrainingRecipe(max_minutes=3.0)).recipe.max_steps == DEFAULT_STEPS
    hsi = plan_recipe(facts(n_bands=200, window=(768, 1536), polygon_widths=(4.0,))).recipe
    assert hsi.mode == "pixels" and hsi.max_minutes == CPU_MINUTES_PIXELS  # pixels mode: its own budget


def test_cpu_time_budget_shrinks_with_a_small_labelled_window():
    """Chips mode on a CPU: below CPU_SMALL_AREA pixels, time and steps shrink with the window (linearly, at least
    CPU_MIN_MINUTES), with a notice; the whole-run budget follows; a GPU and explicit budgets are unaffected."""
    from carl_geo.polygon_training.recipe import (AFTER_LOOP_MINUTES, CPU_MIN_MINUTES, CPU_MINUTES, CPU_SMALL_AREA,
                                                  DEFAULT_STEPS)

    side = int(CPU_SMALL_AREA ** 0.5)
    edge = plan_recipe(facts(window=(side, side), scene=(side, side)))
    assert (edge.recipe.max_minutes, edge.recipe.max_steps) == (CPU_MINUTES, DEFAULT_STEPS)
    assert not any("small labelled window" in n for n in edge.notices)
    quarter = plan_recipe(facts(window=(side // 2, side // 2), scene=(side // 2, side // 2)))
    assert quarter.recipe.max_minutes == pytest.approx(round(CPU_MINUTES / 4, 1))
    assert quarter.recipe.max_steps == DEFAULT_STEPS // 4
    assert quarter.run_minutes == pytest.approx(quarter.recipe.max_minutes + AFTER_LOOP_MINUTES)
    tiny = plan_recipe(facts(window=(41, 41), scene=(41, 41)))
    assert tiny.recipe.max_minutes == CPU_MIN_MINUTES
    assert tiny.recipe.max_steps == round(DEFAULT_STEPS * CPU_MIN_MINUTES / CPU_MINUTES)
    assert [n for n in tiny.notices if "small labelled window (41 x 41 px)" in n and "max_minutes" in n]
    assert plan_recipe(facts(window=(41, 41), device="cuda")).recipe.max_minutes is None
    given = plan_recipe(facts(window=(41, 41)), TrainingRecipe(max_minutes=2.0))
    assert given.recipe.max_minutes == 2.0 and given.recipe.max_steps == DEFAULT_STEPS
    assert not any("small labelled window" in n for n in given.notices)


def test_band_subsets_are_sorted_distinct_and_in_range():
    rng = np.random.default_rng(0)
    sizes = set()
    for _ in range(50):
        idx = draw_band_subsets(rng, 4, 13, 3, 8).numpy()
        n = idx.shape[1]
        sizes.add(n)
        assert idx.shape == (4, n) and 3 <= n <= 8
        for row in idx:
            assert (np.diff(row) > 0).all() and row.min() >= 0 and row.max() < 13
    assert len(sizes) >= 4  # the subset size varies between batches
    assert draw_band_subsets(rng, 2, 2, 3, 8).shape == (2, 2)  # fewer bands than the minimum: all of them


def test_spectral_bins_average_neighbouring_bands():
    assert equal_bins(10, 4).tolist() == [0, 2, 5, 8, 10] and equal_bins(3, 8).tolist() == [0, 1, 2, 3]
    rng = np.random.default_rng(0)
    for _ in range(20):
        e = random_bins(50, 7, rng)
        assert e[0] == 0 and e[-1] == 50 and len(e) == 8 and (np.diff(e) > 0).all()
    img = torch.arange(2 * 6 * 2 * 2, dtype=torch.float32).reshape(2, 6, 2, 2)
    wl = torch.tensor([0.4, 0.5, 0.6, 0.7, 0.8, 0.9])
    m = bin_matrix([np.array([0, 2, 6]), np.array([0, 1, 6])], 6)
    out, w = apply_bins(img, wl, m)
    assert torch.allclose(out[0, 0], img[0, :2].mean(0)) and torch.allclose(out[1, 1], img[1, 1:].mean(0))
    assert torch.allclose(w, torch.tensor([[0.45, 0.75], [0.4, 0.7]]))
    # bands given out of wavelength order are binned with their wavelength neighbours
    perm = torch.tensor([3, 0, 5, 1, 4, 2])
    a, wa = bin_spectra(img, wl, 3)
    b, wb = bin_spectra(img[:, perm], wl[perm], 3)
    assert torch.allclose(a, b) and torch.allclose(wa, wb)


def test_segmenter_bins_many_band_inputs():
    torch.manual_seed(0)
    cfg = tiny_config()
    cfg.spatial.model_kwargs.update(use_abs_pos_emb=False, use_rot_pos_emb=False)
    seg = CARLSegmenter(CARL(cfg), 3, "linear", max_bands=4).eval()
    x = torch.randn(2, 10, 16, 16)
    wl = torch.linspace(0.45, 2.2, 10)
    with torch.no_grad():
        binned, wb = bin_spectra(x, wl, 4)
        plain = CARLSegmenter(seg.backbone, 3, "linear")
        plain.head = seg.head
        assert torch.allclose(seg(x, wl), plain(binned, wb), atol=1e-6)
        assert torch.allclose(seg(x[:, :4], wl[:4]), plain(x[:, :4], wl[:4]), atol=1e-6)  # <= 4 bands: as is


def test_max_bands_survives_the_bundle(tmp_path):
    cfg = tiny_config()
    seg = CARLSegmenter(CARL(cfg), 2, "linear", max_bands=24)
    path = carl_geo.save_bundle(carl_geo.make_bundle(seg, class_names=["a", "b"]), tmp_path / "m.pt")
    assert carl_geo.load_bundle(path).model.max_bands == 24
    with pytest.raises(ValueError, match="max_bands"):
        CARLSegmenter(CARL(cfg), 2, "linear", max_bands=0)


def test_torch_free_name_lists_match_the_registries():
    from carl_geo.models.config import CONFIGS
    from carl_geo.models.names import CONFIG_NAMES, HEAD_NAMES
    from carl_geo.models.segmentation import HEADS

    assert sorted(CONFIG_NAMES) == sorted(CONFIGS) and sorted(HEAD_NAMES) == sorted(HEADS)


def test_pixels_mode_for_small_polygons_on_many_bands_only():
    hsi = plan_recipe(facts(n_bands=200, polygon_widths=(4.0, 5.0, 6.0))).recipe
    assert (hsi.mode, hsi.patch_size, hsi.head, hsi.batch_size) == ("pixels", 1, "linear", 512)
    assert hsi.max_steps == 1500 and hsi.chip_size == 16
    assert plan_recipe(facts(n_bands=200)).recipe.mode == "chips"  # wide polygons
    assert plan_recipe(facts(polygon_widths=(4.0, 5.0, 6.0))).recipe.mode == "chips"  # 6 bands
    huge = facts(n_bands=200, polygon_widths=(4.0,), scene=(5000, 5000))
    assert plan_recipe(huge).recipe.mode == "chips"  # too many pixels to predict one by one
    assert plan_recipe(facts(), TrainingRecipe(mode="pixels")).recipe.patch_size == 1
    with pytest.raises(ValueError, match="patch size 1"):
        plan_recipe(facts(), TrainingRecipe(mode="pixels"), backbone_patch=8)
    with pytest.raises(ValueError, match="normalization 'scene'"):
        plan_recipe(facts(), TrainingRecipe(mode="pixels", normalization="chip"))
    with pytest.raises(ValueError, match="mode must be"):
        plan_recipe(facts(), TrainingRecipe(mode="tiles"))


def test_pixelwise_segmenter_classifies_each_pixel_alone(tmp_path):
    from carl_geo.models.config import scratch_variant

    torch.manual_seed(0)
    seg = CARLSegmenter(CARL(scratch_variant(tiny_config(), 1)), 3, "linear", max_bands=4, pixelwise=True).eval()
    x = torch.randn(2, 6, 5, 7)
    wl = torch.linspace(0.45, 2.2, 6)
    with torch.no_grad():
        out = seg(x, wl)
        assert out.shape == (2, 3, 5, 7)
        # a pixel's logits do not depend on its neighbours, nor on the chunking
        assert torch.allclose(out[:, :, 1:2, 3:4], seg(x[:, :, 1:2, 3:4], wl), atol=1e-5)
        seg.PIXEL_CHUNK = 4
        assert torch.allclose(out, seg(x, wl), atol=1e-5)
    path = carl_geo.save_bundle(carl_geo.make_bundle(seg, class_names=["a", "b", "c"]), tmp_path / "px.pt")
    again = carl_geo.load_bundle(path).model
    assert again.pixelwise and again.max_bands == 4
    with pytest.raises(ValueError, match="patch size 1"):
        CARLSegmenter(CARL(tiny_config()), 2, "linear", pixelwise=True)


def test_schedule_by_share_of_the_budget():
    from carl_geo.polygon_training.polygons import warmup_cosine_at
    from carl_geo.ssl.ema import warmup_cosine

    assert warmup_cosine_at(0.0, 0.1, first=0.01) == pytest.approx(0.01)
    assert warmup_cosine_at(0.05, 0.1) == pytest.approx(0.5) and warmup_cosine_at(0.1, 0.1) == pytest.approx(1.0)
    assert warmup_cosine_at(0.55, 0.1) == pytest.approx(0.505)  # half-way through the decay
    assert warmup_cosine_at(1.0, 0.1) == pytest.approx(0.01) and warmup_cosine_at(2.0, 0.1) == pytest.approx(0.01)
    # the step schedule of CARL-SSL training is the same curve
    assert warmup_cosine(55, 100, 10, 0.01) == pytest.approx(warmup_cosine_at(0.55, 0.1), abs=1e-9)


def test_one_validation_cadence_whether_steps_or_the_clock_lead():
    from carl_geo.polygon_training.polygons import ValidationCadence

    def checks(shares: list[float], total: int, val_every: int) -> list[int]:
        """Steps (1-based) at which the training loop validates, given the budget share after each step."""
        cadence = ValidationCadence(total, val_every)
        return [step for step, share in enumerate(shares, 1) if cadence.due(share)]

    total = 100
    assert checks([i / total for i in range(1, total + 1)], total, 10) == list(range(10, 101, 10))  # steps only
    # a clock a little ahead of the steps (time budget): still about ten checks, not the twenty that checking
    # by steps and by time separately made
    clock = [min(1.0, 1.03 * i / total) for i in range(1, total + 1)]
    assert 9 <= len(checks(clock, total, 10)) <= 11
    # a slow machine (the clock at twice the step share): checks follow the clock, one per tenth of the time
    slow = [min(1.0, 2 * i / total) for i in range(1, total // 2 + 1)]
    assert checks(slow, total, 10) == list(range(5, 51, 5))
