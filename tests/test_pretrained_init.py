"""Upstream's encoder initialisation: timm's EVA-02 trunk and DINOv2 spectral blocks, from a local timm
weights file (tests never download) or timm's hub (one clear line when offline)."""

from __future__ import annotations

from dataclasses import replace

import huggingface_hub.constants
import pytest
import timm
import torch
from safetensors.torch import save_file

from carl_geo.models.carl import CARL
from carl_geo.models.config import tiny_config
from carl_geo.models.spectral_encoder import load_dinov2_blocks
from carl_geo.trainers import CARLSegmentationTask

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """No Hugging Face Hub and an empty cache: what a machine without internet sees."""
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf_cache"))


@pytest.fixture(scope="module")
def eva_file(tmp_path_factory):
    """timm's state dict of the tiny config's (narrowed) EVA-02 trunk, all 12 blocks, as safetensors."""
    torch.manual_seed(1)
    net = timm.create_model("eva02_base_patch14_224", pretrained=False, embed_dim=128, num_heads=2)
    path = tmp_path_factory.mktemp("timm") / "eva02_tiny.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, path)
    return path, net.state_dict()


def test_spatial_trunk_from_a_local_timm_file(eva_file):
    path, ref = eva_file
    model = CARL(tiny_config(), spatial_init=str(path))
    trunk = model.spatial_encoder.net.state_dict()
    assert len(model.spatial_encoder.net.blocks) == 2  # loaded with all 12 blocks, then truncated as upstream
    for key, value in trunk.items():
        assert torch.equal(value, ref[key]), key
    assert not torch.equal(CARL(tiny_config()).spatial_encoder.net.pos_embed, ref["pos_embed"])  # random init differs
    out = model(torch.randn(1, 4, 32, 32), torch.tensor([0.49, 0.56, 0.665, 0.842]))
    assert out.spatial.shape == (1, 128, 4, 4) and torch.isfinite(out.spatial).all()


def test_timm_download_offline_is_one_clear_line(offline):
    with pytest.raises(FileNotFoundError) as info:
        CARL(tiny_config(), spatial_init="timm")
    msg = str(info.value)
    assert "\n" not in msg and "offline" in msg and "eva02_base_patch14_224" in msg and "local file" in msg
    with pytest.raises(FileNotFoundError, match="vit_small_patch14_dinov2.lvd142m from the Hugging Face Hub"):
        cfg = tiny_config()
        CARL(replace(cfg, spectral=replace(cfg.spectral, embed_dim=384, num_heads=6, depth=2)), spectral_init="timm")


def test_weights_that_do_not_fit_and_missing_files(eva_file, tmp_path):
    path, _ = eva_file
    cfg = tiny_config()
    narrower = replace(cfg, spatial=replace(cfg.spatial, model_kwargs={"embed_dim": 64, "num_heads": 2}))
    with pytest.raises(ValueError, match="do not fit this encoder .*size mismatch"):
        CARL(narrower, spatial_init=str(path))
    with pytest.raises(FileNotFoundError, match="pretrained weights file not found"):
        CARL(cfg, spatial_init=str(tmp_path / "nope.safetensors"))
    with pytest.raises(ValueError, match="no DINOv2 weights for a 64-wide spectral encoder"):
        CARL(cfg, spectral_init=str(path))


def test_spectral_blocks_from_dinov2_as_upstream(tmp_path):
    torch.manual_seed(2)
    dino = timm.create_model("vit_small_patch14_dinov2", pretrained=False)
    path = tmp_path / "dinov2_s.pth"
    torch.save(dino.state_dict(), path)
    ref = dino.state_dict()
    cfg = tiny_config()
    cfg = replace(cfg, spectral=replace(cfg.spectral, embed_dim=384, num_heads=6, depth=3))
    model = CARL(cfg, spectral_init=str(path))
    enc = model.spectral_tf
    for i, block in enumerate(enc.blocks):  # self- (0, 2) and cross-attention (1) blocks alike
        qkv_w, qkv_b = ref[f"blocks.{i}.attn.qkv.weight"], ref[f"blocks.{i}.attn.qkv.bias"]
        for j, lin in enumerate((block.attn.q, block.attn.k, block.attn.v)):
            rows = slice(384 * j, 384 * (j + 1))
            assert torch.equal(lin.weight, qkv_w[rows]) and torch.equal(lin.bias, qkv_b[rows])
        for name in ("norm1.weight", "attn.proj.weight", "ls1.gamma", "norm2.bias", "mlp.fc1.weight", "mlp.fc2.bias",
                     "ls2.gamma"):
            assert torch.equal(block.state_dict()[name], ref[f"blocks.{i}.{name}"]), name
    set_keys = load_dinov2_blocks(CARL(cfg).spectral_tf, str(path))
    assert len(set_keys) == 3 * 18  # 18 tensors per block (q, k, v split from qkv); queries and norm untouched
    assert not any(k.startswith(("queries", "norm.", "positional")) for k in set_keys)


def test_trainer_builds_its_backbone_from_timm_files(eva_file):
    path, ref = eva_file
    task = CARLSegmentationTask(num_classes=2, config="tiny", mode="finetune", spatial_init=str(path))
    trunk = task.model.backbone.spatial_encoder.net.state_dict()
    assert all(torch.equal(v, ref[k]) for k, v in trunk.items())
    assert task.hparams["spatial_init"] == str(path)


def test_geobench_no_checkpoint_baseline_is_upstreams(make_geobench, tmp_path, offline, capsys):
    from carl_geo.cli import main
    from carl_geo.evaluation.geobench import GeoBenchSettings

    published = GeoBenchSettings(root=tmp_path, checkpoint="random", out=tmp_path / "o")
    assert published.encoder_inits() == ("timm", "timm")  # EVA-02 trunk + DINOv2 spectral blocks
    assert GeoBenchSettings(root=tmp_path, checkpoint="random", out=tmp_path / "o", config="tiny").encoder_inits() \
        == (None, None)
    bench = make_geobench(n_train=8, n_valid=4, n_test=4)
    out = tmp_path / "no_ssl"
    rc = main(["geobench", "--root", str(bench), "--checkpoint", "random", "--config", "tiny", "--spatial-init", "timm",
               "--tasks", "m-synth-cls", "--epochs", "1", "--seeds", "1", "--num-workers", "0", "--out", str(out),
               "--quiet"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "cannot fetch the timm weights" in err
    assert not list(out.glob("runs/**/*.json"))  # stopped before any training
