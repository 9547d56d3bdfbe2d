"""CARL-SSL model: published checkpoint layout, upstream parity of the masked passes, teacher EMA."""

from __future__ import annotations

import json
import math

import pytest
import torch

from carl_geo.ssl import CARLPretrainTask
from carl_geo.ssl.masking import SpatialMasking, SpectralMasking, SpectralMasks, apply_masks
from carl_geo.ssl.model import encode_context, encode_student, student_forward, teacher_features
from carl_geo.ssl.predictors import sincos_2d
from helpers import reference_dir

REF = reference_dir()
needs_ref = pytest.mark.skipif(REF is None, reason="upstream reference folder ../shared/carl_reference not present")

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def fixture():
    return torch.load(REF / "fixtures_tiny.pt", map_location="cpu", weights_only=True)


@needs_ref
def test_published_config_has_the_published_checkpoint_layout():
    ref = json.loads((REF / "published_keys.json").read_text())
    with torch.device("meta"):  # shapes only: no 155 M-element initialisation
        task = CARLPretrainTask.from_upstream_config({"model_kwargs": ref["config_model_kwargs"]})
    mine = [{"key": k, "shape": list(v.shape), "dtype": str(v.dtype).removeprefix("torch.")}
            for k, v in task.state_dict().items()]
    assert mine == ref["keys"]  # same keys, shapes, dtypes, and order (733 tensors)
    assert sum(math.prod(k["shape"]) for k in mine) == ref["n_elements_total"]
    trainable = sum(p.numel() for p in task.model.parameters() if p.requires_grad)
    unused = ref["unused_in_forward_elements"]["total"]  # timm's patch_embed / fc_norm: kept but frozen
    assert trainable == sum(ref["trainable_params_student"].values()) - unused


@needs_ref
def test_upstream_tiny_checkpoint_loads_and_teacher_and_student_match_upstream(fixture):
    task = CARLPretrainTask.from_upstream_config(fixture["ssl_config"])
    state = fixture["checkpoint"]["state_dict"]
    ours = task.state_dict()
    for prefix in ("model.spectral_predictor.", "model.spatial_predictor."):
        theirs = {k: tuple(v.shape) for k, v in state.items() if k.startswith(prefix)}
        assert theirs and theirs == {k: tuple(v.shape) for k, v in ours.items() if k.startswith(prefix)}
    task.load_state_dict(state, strict=True)  # the whole upstream SSL checkpoint, teacher included

    for case in fixture["cases"][:2]:  # 13 bands 64x64; 5 unsorted per-sample wavelengths 48x40
        img, wl = case["img"], case["wavelengths"]
        b, c = img.shape[:2]
        h, w = case["spatial"].shape[-2:]
        spat_t, _ = teacher_features(task.teacher, img, wl)
        ref_t = case["spatial_teacher"].flatten(2).transpose(1, 2)
        torch.testing.assert_close(spat_t, torch.nn.functional.layer_norm(ref_t, ref_t.shape[-1:]), rtol=1e-4,
                                   atol=1e-4)
        # the student's masked pass with every token and band visible is upstream's forward
        enc = torch.arange(h * w).expand(b, -1)
        all_bands = torch.arange(c).expand(b * h * w, -1)
        masks = SpectralMasks(all_bands, torch.ones_like(all_bands, dtype=torch.bool), [all_bands[:, :1]])
        with torch.no_grad():
            ctx = encode_student(task.model, img, wl, enc, masks)
        torch.testing.assert_close(ctx.spatial, case["spatial"].flatten(2).transpose(1, 2), rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(ctx.spectral, case["spectral"].flatten(2).transpose(1, 2), rtol=1e-4, atol=1e-4)


def test_context_encoding_equals_upstream_attention_mask():
    """Running the trunk on the context tokens only = upstream's full grid with non-context keys masked."""
    torch.manual_seed(0)
    task = CARLPretrainTask(backbone="tiny", image_size=64)
    model = task.model.eval()
    grid = torch.randn(3, 8, 8, model.embed_dim)
    enc = SpatialMasking(8)(3, step=5).enc
    with torch.no_grad():
        ours = encode_context(model, grid, enc)
        net = model.spatial_encoder.net
        x, rope = net._pos_embed(grid)
        allowed = torch.zeros(3, x.shape[1], dtype=torch.bool)
        allowed[:, 0] = True  # prefix (class) token
        allowed.scatter_(1, enc + 1, True)
        mask = allowed[:, None, None, :].expand(-1, 1, x.shape[1], -1)
        for blk in net.blocks:
            x = blk(x, rope=rope, attn_mask=mask)
        ref = apply_masks(x[:, 1:], [enc])
    assert ours.shape == (3, enc.shape[1], model.embed_dim)
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5)


def test_spatial_predictor_position_embedding_is_upstreams_2d_sincos():
    pe = sincos_2d(16, 4)  # D = 16: quarter = 4 frequencies 1 / 10000**(k/4)
    row, col = 2, 3
    v = pe[row * 4 + col]
    omega = [1.0 / 10000 ** (k / 4) for k in range(4)]
    expected = ([math.sin(col * o) for o in omega] + [math.cos(col * o) for o in omega]
                + [math.sin(row * o) for o in omega] + [math.cos(row * o) for o in omega])
    assert v.tolist() == pytest.approx(expected, abs=1e-6)


def test_teacher_gets_no_gradient_and_moves_by_the_ema_rule():
    torch.manual_seed(0)
    task = CARLPretrainTask(backbone="tiny", image_size=32, spatial_masking={"min_keep": 2},
                            spectral_predictor={"predictor_embed_dim": 64, "depth": 1, "num_heads": 4},
                            spatial_predictor={"predictor_embed_dim": 64, "depth": 1, "num_heads": 4})
    task._total_steps = 10  # normally trainer.estimated_stepping_batches
    img = torch.randn(4, 7, 32, 32)
    wl = torch.linspace(0.45, 2.2, 7).expand(4, -1)
    loss = task.compute_loss(img, wl, None)["loss"]
    loss.backward()
    assert all(not p.requires_grad and p.grad is None for p in task.teacher.parameters())
    assert all(p.grad is not None for p in task.model.parameters() if p.requires_grad)

    opt = torch.optim.SGD([p for p in task.model.parameters() if p.requires_grad], lr=0.1)
    opt.step()
    before = {k: v.clone() for k, v in task.teacher.state_dict().items()}
    student = dict(task.model.named_parameters())
    m = task.update_teacher(step=4)
    assert m == pytest.approx(0.996 + 4 * (0.99999 - 0.996) / 10, abs=1e-12)
    moved = 0
    for name, p in task.teacher.named_parameters():
        expected = m * before[name] + (1 - m) * student[name].detach()
        torch.testing.assert_close(p.data, expected, rtol=0, atol=1e-7)
        moved += int(not torch.equal(p.data, before[name]))
    assert moved > 50  # the student changed, so the teacher moved
    assert "spectral_predictor.mask_token" not in dict(task.teacher.named_parameters())
    # the masked student pass gives predictions shaped like the targets
    sp, spec, gen = task.masks(4, 7)
    out = student_forward(task.model, img, wl, sp, spec, generator=gen)
    assert out.spatial.shape == (2 * 4, sp.pred[0].shape[1], task.model.embed_dim)
    assert out.spectral.shape == (1 * 4, spec.pred[0].shape[1], 64)


def test_padded_batch_equals_its_unpadded_bands():
    """A 7-band image padded to 13 bands (band_mask) gets the same loss as alone."""
    torch.manual_seed(0)
    task = CARLPretrainTask(backbone="tiny", image_size=32, spatial_masking={"min_keep": 2}).eval()
    img = torch.randn(2, 7, 32, 32)
    wl = torch.linspace(0.45, 2.2, 7).expand(2, -1)
    padded = torch.cat([img, torch.zeros(2, 6, 32, 32)], 1)
    wl_p = torch.cat([wl, torch.ones(2, 6)], 1)
    band_mask = torch.arange(13).expand(2, -1) < 7
    with torch.no_grad():
        a = task.compute_loss(img, wl, None)
        b = task.compute_loss(padded, wl_p, band_mask)
    # same masks (7 real bands either way, one 2-3 band block) -> same loss
    assert float(a["loss"]) == pytest.approx(float(b["loss"]), rel=1e-5)
    with pytest.raises(ValueError, match="real bands first"):
        task._unpack({"image": padded, "wavelengths": wl_p, "band_mask": band_mask.flip(1)})


def test_construction_errors():
    with pytest.raises(ValueError, match="multiple of the patch size"):
        CARLPretrainTask(backbone="tiny", image_size=60)
    with pytest.raises(ValueError, match="unknown predictor setting"):
        CARLPretrainTask(backbone="tiny", image_size=64, spatial_predictor={"width": 3})
    with pytest.raises(ValueError, match="ema"):
        CARLPretrainTask(backbone="tiny", image_size=64, ema=(0.999, 0.99))
    with pytest.raises(ValueError, match="backbone must be"):
        CARLPretrainTask(backbone=3, image_size=64)
    assert SpectralMasking().block(13, torch.Generator().manual_seed(0))[1] == 1


@needs_ref
def test_continue_pretraining_from_ssl_checkpoint_or_backbone_file(fixture, tmp_path):
    ckpt = tmp_path / "upstream_ssl.ckpt"
    torch.save(fixture["checkpoint"], ckpt)
    task = CARLPretrainTask.from_upstream_config(fixture["ssl_config"], init_weights=str(ckpt))
    state = fixture["checkpoint"]["state_dict"]
    assert all(torch.equal(v, state[k]) for k, v in task.state_dict().items())  # predictors and teacher too

    import carl_geo

    backbone = tmp_path / "teacher.safetensors"
    carl_geo.save_carl(carl_geo.load_carl(ckpt, task.config, which="teacher"), backbone)
    fresh = CARLPretrainTask.from_upstream_config(fixture["ssl_config"], init_weights=str(backbone))
    for k, v in fresh.teacher.state_dict().items():
        assert torch.equal(v, state["teacher." + k]) and torch.equal(fresh.model.state_dict()[k], v)
    assert not torch.equal(fresh.model.spatial_predictor.mask_token, state["model.spatial_predictor.mask_token"])
    with pytest.raises(carl_geo.CheckpointError, match="does not match"):
        other = {"patch_size": 8, "spec_encoder_kwargs": {"embed_dim": 32, "depth": 2, "num_heads": 2, "n_queries": 2},
                 "spat_encoder_kwargs": {"model_name": "eva02_base_patch14_224", "depth": 1,
                                         "model_kwargs": {"embed_dim": 64, "num_heads": 2}}}
        CARLPretrainTask(backbone=other, image_size=64, init_weights=str(backbone))
