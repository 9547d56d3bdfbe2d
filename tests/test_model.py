"""The CARL backbone: shapes, input checks, band-order invariance, padding and band masks."""

from __future__ import annotations

import pytest
import torch

import carl_geo
from carl_geo.models.segmentation import CARLEmbedder, CARLSegmenter


def test_output_shapes_any_band_count(tiny_model):
    for c in (1, 3, 13, 40):
        x = torch.randn(2, c, 32, 24)
        out = tiny_model(x, torch.linspace(0.4, 2.4, c))
        assert out.spatial.shape == (2, 128, 4, 3)
        assert out.spectral.shape == (2, 128, 4, 3)
        assert torch.isfinite(out.spatial).all()


def test_wavelengths_per_sample_equal_shared(tiny_model, s2_wavelengths):
    x = torch.randn(2, 13, 16, 16)
    with torch.no_grad():
        a = tiny_model(x, s2_wavelengths).spatial
        b = tiny_model(x, s2_wavelengths.expand(2, -1)).spatial
    torch.testing.assert_close(a, b)


def test_wavelengths_change_the_output(tiny_model, s2_wavelengths):
    x = torch.randn(1, 13, 16, 16)
    with torch.no_grad():
        a = tiny_model(x, s2_wavelengths).spatial
        b = tiny_model(x, s2_wavelengths + 0.3).spatial
    assert (a - b).abs().max() > 1e-3


@pytest.mark.parametrize(
    ("img_shape", "wl_shape", "match"),
    [
        ((1, 13, 16, 16), (12,), "13 bands but 12 wavelengths"),
        ((2, 4, 16, 16), (3, 4), r"\(C,\) or \(B, C\)"),
        ((13, 16, 16), (13,), r"\(B, C, H, W\)"),
    ],
)
def test_shape_mismatch_is_clear_valueerror(tiny_model, img_shape, wl_shape, match):
    with pytest.raises(ValueError, match=match):
        tiny_model(torch.randn(*img_shape), torch.full(wl_shape, 0.5))


def test_nanometres_are_refused(tiny_model):
    with pytest.raises(ValueError, match="nanometres: divide by 1000"):
        tiny_model(torch.randn(1, 3, 16, 16), torch.tensor([665.0, 560.0, 490.0]))


def test_nonfinite_wavelengths_are_refused(tiny_model):
    with pytest.raises(ValueError, match="NaN"):
        tiny_model(torch.randn(1, 2, 16, 16), torch.tensor([0.5, float("nan")]))


def test_band_order_invariance(tiny_model, s2_wavelengths):
    torch.manual_seed(3)
    x = torch.randn(2, 13, 24, 24)
    perm = torch.randperm(13)
    with torch.no_grad():
        a = tiny_model(x, s2_wavelengths)
        b = tiny_model(x[:, perm], s2_wavelengths[perm])
    torch.testing.assert_close(a.spatial, b.spatial, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(a.spectral, b.spectral, rtol=1e-4, atol=1e-4)
    # permuting only the bands (not their wavelengths) is a different input
    with torch.no_grad():
        c = tiny_model(x[:, perm], s2_wavelengths)
    assert (a.spatial - c.spatial).abs().max() > 1e-3


def test_padding_to_patch_size(tiny_model):
    x = torch.randn(1, 3, 37, 29)
    wl = torch.tensor([0.49, 0.56, 0.665])
    with torch.no_grad():
        out = tiny_model(x, wl)
        assert out.spatial.shape[-2:] == (5, 4)  # ceil(37/8), ceil(29/8)
        padded = torch.nn.functional.pad(x, (0, 3, 0, 3), mode="replicate")
        torch.testing.assert_close(out.spatial, tiny_model(padded, wl).spatial)


def test_band_mask_padding_equals_unpadded(tiny_model):
    torch.manual_seed(0)
    x = torch.randn(2, 5, 16, 16)
    wl = torch.tensor([[0.45, 0.55, 0.65, 0.85, 1.6], [0.5, 0.6, 0.7, 0.9, 2.2]])
    padded = torch.cat([x, torch.randn(2, 3, 16, 16) * 50], dim=1)
    wl_padded = torch.cat([wl, torch.full((2, 3), 0.7)], dim=1)
    mask = torch.tensor([[True] * 5 + [False] * 3] * 2)
    with torch.no_grad():
        a = tiny_model(x, wl).spatial
        b = tiny_model(padded, wl_padded, band_mask=mask).spatial
        # unmasked, the extra bands count (given distinct wavelengths: repeated ones are refused)
        c = tiny_model(padded, torch.cat([wl, torch.tensor([[0.71, 0.72, 0.73]] * 2)], dim=1)).spatial
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
    assert (a - c).abs().max() > 1e-2


def test_segmenter_and_embedder_full_resolution(tiny_model):
    x = torch.randn(2, 6, 37, 29)
    wl = torch.tensor(carl_geo.get_sensor("landsat7_etm").wavelengths)
    for head in ("linear", "progressive"):
        seg = CARLSegmenter(tiny_model, num_classes=7, head=head).eval()
        assert seg(x, wl).shape == (2, 7, 37, 29)
    emb = CARLEmbedder(tiny_model)
    assert emb(x, wl).shape == (2, emb.out_channels, 37, 29)


def test_gradients_reach_every_trainable_parameter():
    model = carl_geo.CARL(carl_geo.tiny_config())
    out = model(torch.randn(2, 4, 16, 16), torch.tensor([0.49, 0.56, 0.665, 0.842]))
    (out.spatial.square().mean() + out.spectral.square().mean()).backward()
    unused = {"spatial_encoder.net.patch_embed.proj.weight", "spatial_encoder.net.patch_embed.proj.bias",
              "spatial_encoder.net.fc_norm.weight", "spatial_encoder.net.fc_norm.bias"}
    for name, p in model.named_parameters():
        if p.requires_grad and name not in unused:
            assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_configs():
    pub = carl_geo.published_config()
    assert (pub.spectral.embed_dim, pub.spectral.depth, pub.spectral.num_heads, pub.spectral.n_queries) == (384, 8, 6, 8)
    assert pub.patch_size == 8 and pub.spatial.depth == 8
    assert carl_geo.CARLConfig.from_upstream(pub.to_upstream()) == pub
    assert carl_geo.CARLConfig.from_dict(carl_geo.tiny_config().to_dict()) == carl_geo.tiny_config()
    with pytest.raises(ValueError, match="unknown CARL config"):
        carl_geo.get_config("huge")


def test_band_bucketing_matches_plain_forward(tiny_model):
    x = torch.randn(2, 13, 16, 16)
    wl = torch.linspace(0.44, 2.2, 13)
    with torch.no_grad():
        ref = tiny_model(x, wl).spatial
        tiny_model.band_bucket = 8  # 13 -> 16 bands, 3 masked
        try:
            bucketed = tiny_model(x, wl).spatial
        finally:
            tiny_model.band_bucket = 0
    torch.testing.assert_close(bucketed, ref, rtol=1e-4, atol=1e-4)


def test_bf16_autocast_close_to_fp32(tiny_model, s2_wavelengths):
    """The bf16 fast path stays within a stated tolerance of float32 (relative 5 % of the output scale)."""
    x = torch.randn(1, 13, 32, 32)
    with torch.no_grad():
        ref = tiny_model(x, s2_wavelengths).spatial
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = tiny_model(x, s2_wavelengths).spatial.float()
    assert (low - ref).abs().max() <= 0.05 * ref.abs().max()


def test_small_attention_equals_scaled_dot_product_attention():
    """The CPU attention over band tokens (two matrix products) is the function SDPA computes, masks included: in
    float64 to rounding, in fp32 within 1e-5, and in bf16 within bf16's resolution of SDPA's own bf16 result."""
    from carl_geo.models.spectral_encoder import small_attention

    torch.manual_seed(0)
    q, k, v = torch.randn(5, 3, 8, 16), torch.randn(5, 3, 13, 16), torch.randn(5, 3, 13, 16)
    mask = torch.ones(5, 1, 1, 13, dtype=torch.bool)
    mask[1, ..., 9:] = False  # a padded sample: its last 4 bands take no part
    for m in (None, mask):
        ref = torch.nn.functional.scaled_dot_product_attention(q.double(), k.double(), v.double(), attn_mask=m)
        torch.testing.assert_close(small_attention(q.double(), k.double(), v.double(), m), ref, rtol=1e-12, atol=1e-12)
        low = small_attention(q.bfloat16(), k.bfloat16(), v.bfloat16(), m).double()
        sdpa = torch.nn.functional.scaled_dot_product_attention(q.bfloat16(), k.bfloat16(), v.bfloat16(),
                                                                attn_mask=m).double()
        assert (low - ref).abs().max() < 0.05 and (sdpa - ref).abs().max() < 0.05
        assert (low - ref).abs().max() > 0  # bf16 really ran
        f32 = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=m)
        torch.testing.assert_close(small_attention(q, k, v, m), f32, rtol=1e-5, atol=1e-5)
    # the masked sample equals the same sample with its padded bands dropped
    cut = small_attention(q[1:2].double(), k[1:2, :, :9].double(), v[1:2, :, :9].double())
    torch.testing.assert_close(small_attention(q.double(), k.double(), v.double(), mask)[1:2], cut)


def test_spectral_attention_on_a_cpu_is_the_two_products_in_every_dtype(tiny_model, s2_wavelengths, monkeypatch):
    """On a CPU the spectral encoder's attention runs as :func:`small_attention` in fp32 too (1.10x faster than the
    fused kernel there, bf16 1.15x); the features equal the fused kernel's within 1e-5."""
    import carl_geo.models.spectral_encoder as spectral

    x = torch.randn(2, len(s2_wavelengths), 32, 32)
    original, dtypes = spectral.small_attention, []

    def counted(q, k, v, m=None):
        dtypes.append(q.dtype)
        return original(q, k, v, m)

    monkeypatch.setattr(spectral, "small_attention", counted)
    with torch.no_grad():
        ours = tiny_model(x, s2_wavelengths).spatial
    assert dtypes and set(dtypes) == {torch.float32}
    fused = torch.nn.functional.scaled_dot_product_attention
    monkeypatch.setattr(spectral, "small_attention", lambda q, k, v, m=None: fused(q, k, v, attn_mask=m))
    with torch.no_grad():
        ref = tiny_model(x, s2_wavelengths).spatial
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5)


def test_cpu_inference_in_column_chunks_equals_one_pass(tiny_model, monkeypatch):
    """CPU inference runs the spectral blocks on chunks of token columns (a cache-sized working set);
    the features, including padded bands and the spectral tokens, equal one pass over all columns."""
    import carl_geo.models.spectral_encoder as spectral

    torch.manual_seed(3)
    img = torch.randn(2, 5, 40, 24)
    wl = torch.tensor([[0.49, 0.56, 0.66, 0.83, 1.61], [0.48, 0.55, 0.65, 0.86, 2.2]])
    mask = torch.tensor([[True] * 5, [True, True, True, False, False]])
    enc = tiny_model.spectral_tf
    tokens = tiny_model.embed_bands(tiny_model.pad_to_patch(img))  # 2 * 5 * 3 = 30 columns
    with torch.no_grad():
        whole = tiny_model(img, wl, mask)
        whole_tokens = enc(tokens, wl, mask)
        assert enc.chunk_columns(tokens) == 30
        monkeypatch.setattr(spectral, "CPU_CHUNK_BYTES", 7 * 5 * enc.blocks[0].mlp.fc1.out_features * 4)
        assert enc.chunk_columns(tokens) == 7  # 5 chunks, the last one 2 columns, crossing the samples
        chunked = tiny_model(img, wl, mask)
        chunked_tokens = enc(tokens, wl, mask)
    with torch.enable_grad():
        assert enc.chunk_columns(tokens) == 30  # training keeps one pass
    torch.testing.assert_close(chunked.spatial, whole.spatial, rtol=0, atol=1e-5)
    torch.testing.assert_close(chunked.spectral, whole.spectral, rtol=0, atol=1e-5)
    for key in ("queries", "spectral_tokens"):
        torch.testing.assert_close(chunked_tokens[key], whole_tokens[key], rtol=0, atol=1e-5)
