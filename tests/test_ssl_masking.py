"""CARL-SSL masks: configured sizes, no context/target overlap, upstream's band rules."""

from __future__ import annotations

import pytest
import torch

from carl_geo.ssl.masking import SpatialMasking, SpectralMasking, apply_masks

GRID = 16  # published: image_size 128 / patch 8


def _is_rectangle(idx: torch.Tensor, width: int) -> tuple[int, int] | None:
    rows, cols = idx // width, idx % width
    h, w = int(rows.max() - rows.min() + 1), int(cols.max() - cols.min() + 1)
    return (h, w) if h * w == len(idx) else None


def test_spatial_masks_sizes_and_no_overlap():
    masking = SpatialMasking(GRID)  # upstream config: enc 0.5-0.75, pred 0.3-0.5, aspect 0.75-1.5, 2 targets
    n = GRID * GRID
    relaxed = 0
    for step in range(40):
        m = masking(8, step=step)
        relaxed += masking.relaxed
        assert m.enc.shape[0] == 8 and len(m.pred) == 2
        h, w = masking.block_size(torch.Generator().manual_seed(step), masking.pred_mask_scale, masking.aspect_ratio)
        for p in m.pred:
            assert p.shape == (8, h * w)  # every target block is an h x w rectangle of the configured scale
            assert 0.3 * n - 2 * GRID <= h * w <= 0.5 * n + 2 * GRID
            assert 0.75 / 1.5 <= h / w <= 1.5 / 0.75
            for row in p:
                assert _is_rectangle(row, GRID) == (h, w)
        assert m.enc.shape[1] > 4  # min_keep
        for b in range(8):
            ctx = set(m.enc[b].tolist())
            assert len(ctx) == m.enc.shape[1] and max(ctx) < n and torch.equal(m.enc[b], m.enc[b].sort().values)
            if masking.relaxed == 0:
                for p in m.pred:
                    assert not ctx & set(p[b].tolist()), "context overlaps a target block"
    assert relaxed <= 2  # relaxation (upstream's fallback) is rare on the published grid


def test_spatial_masks_deterministic_per_step_and_errors():
    a, b = SpatialMasking(GRID)(4, step=3), SpatialMasking(GRID)(4, step=3)
    assert torch.equal(a.enc, b.enc) and all(torch.equal(x, y) for x, y in zip(a.pred, b.pred, strict=True))
    with pytest.raises(ValueError, match="nenc=1"):
        SpatialMasking(GRID, nenc=2)
    with pytest.raises(ValueError, match="enc_mask_scale"):
        SpatialMasking(GRID, enc_mask_scale=(0.8, 0.5))


@pytest.mark.parametrize("bands", [202, 64, 20])
def test_spectral_masks_hyperspectral(bands):
    masking = SpectralMasking()  # pred 0.15-0.3, 2 blocks, keep >= 20 %
    for step in range(5):
        m = masking(300, bands, step=step)
        assert len(m.pred) == 2
        h = m.pred[0].shape[1]
        assert int(0.15 * bands) <= h <= int(0.3 * bands)
        assert m.all_valid and bool(m.enc_valid.all())
        for p in m.pred:  # contiguous blocks inside the band range
            assert torch.equal(p - p[:, :1], torch.arange(h).expand_as(p)) and int(p.max()) < bands
        union = torch.zeros(300, bands, dtype=torch.bool)
        for p in m.pred:
            union.scatter_(1, p, True)
        kept = (~union).sum(1)
        assert m.enc.shape[1] == int(kept.min())  # truncated to the smallest count (upstream)
        assert not bool(union.gather(1, m.enc).any()), "a context band is also masked"
        assert m.enc.shape[1] >= 0.2 * bands


def test_spectral_masks_multispectral_rules():
    masking = SpectralMasking()
    lengths = {masking(50, 13, step=s).pred[0].shape[1] for s in range(30)}
    assert lengths == {2, 3}  # below 20 bands: one block of 2-3 bands
    assert len(masking(50, 13).pred) == 1
    m6 = masking(50, 6, step=0)  # shortened so that > 3 bands stay
    assert m6.pred[0].shape[1] <= 2 and m6.enc.shape[1] >= 4
    assert masking(50, 5).pred[0].shape[1] == 1
    with pytest.raises(ValueError, match="at least 5 bands"):
        masking(10, 4)


def test_spectral_masks_padded_rows():
    counts = torch.tensor([13, 13, 6, 6, 202, 202])
    m = SpectralMasking()(6, counts, step=1, truncate=False)
    for r, c in enumerate(counts.tolist()):
        assert int(m.pred[0][r].max()) < c  # masked bands are real bands of the row
        ctx = m.enc[r][m.enc_valid[r]]
        assert int(ctx.max()) < c and not set(ctx.tolist()) & set(m.pred[0][r].tolist())
        assert len(ctx) == c - m.pred[0].shape[1]  # one block: all other real bands are context
    assert not m.all_valid


def test_apply_masks_is_mask_major_gather():
    x = torch.arange(2 * 5 * 3).view(2, 5, 3)
    m = [torch.tensor([[0, 4], [1, 2]]), torch.tensor([[3, 3], [0, 1]])]
    out = apply_masks(x, m)
    assert out.shape == (4, 2, 3)
    assert torch.equal(out[1], x[1, [1, 2]]) and torch.equal(out[2], x[0, [3, 3]])
