"""Weight files: safe loading, clear errors, round trips, model bundles."""

from __future__ import annotations

import os
import pickle

import pytest
import torch

import carl_geo
from carl_geo.models.checkpoint import CheckpointError


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch /tmp/carl_geo_pwned",))


def test_hostile_pickle_is_refused(tmp_path):
    path = tmp_path / "evil.ckpt"
    with open(path, "wb") as f:
        pickle.dump({"state_dict": {}, "x": _Evil()}, f)
    if os.path.exists("/tmp/carl_geo_pwned"):
        os.remove("/tmp/carl_geo_pwned")
    with pytest.raises(CheckpointError, match="refusing to load"):
        carl_geo.load_carl(path, carl_geo.tiny_config())
    torch.save({"state_dict": {}, "x": _Evil()}, tmp_path / "evil2.ckpt")
    with pytest.raises(CheckpointError, match="refusing to load"):
        carl_geo.load_bundle(tmp_path / "evil2.ckpt")
    assert not os.path.exists("/tmp/carl_geo_pwned")


def test_corrupt_and_missing_files(tmp_path):
    bad = tmp_path / "truncated.ckpt"
    torch.save({"state_dict": carl_geo.CARL(carl_geo.tiny_config()).state_dict()}, bad)
    bad.write_bytes(bad.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="cannot read"):
        carl_geo.load_carl(bad, carl_geo.tiny_config())
    with pytest.raises(CheckpointError, match="not found"):
        carl_geo.load_carl(tmp_path / "nope.ckpt")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a safetensors file at all")
    with pytest.raises(CheckpointError, match="safetensors"):
        carl_geo.load_carl(junk, carl_geo.tiny_config())


def test_wrong_architecture_names_the_keys(tmp_path, tiny_model):
    path = tmp_path / "tiny.pt"
    torch.save({"state_dict": {f"model.{k}": v for k, v in tiny_model.state_dict().items()}}, path)
    with pytest.raises(CheckpointError) as info:
        carl_geo.load_carl(path, carl_geo.published_config())
    msg = str(info.value)
    assert "shape mismatches" in msg and "embedder.weight" in msg and "missing keys" in msg
    assert "Traceback" not in msg


def test_teacher_requested_from_non_ssl_checkpoint(tmp_path, tiny_model):
    path = tmp_path / "student_only.ckpt"
    torch.save({"state_dict": {f"model.{k}": v for k, v in tiny_model.state_dict().items()}}, path)
    with pytest.raises(CheckpointError, match="no 'teacher"):
        carl_geo.load_carl(path, carl_geo.tiny_config(), which="teacher")
    assert isinstance(carl_geo.load_carl(path, carl_geo.tiny_config()), carl_geo.CARL)


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_save_load_round_trip_keeps_config(tmp_path, tiny_model, suffix):
    path = carl_geo.save_carl(tiny_model, tmp_path / f"backbone{suffix}", meta={"note": "test"})
    loaded = carl_geo.load_carl(path)  # config comes from the file
    assert loaded.config == tiny_model.config
    x, wl = torch.randn(1, 4, 16, 16), torch.tensor([0.49, 0.56, 0.665, 0.842])
    with torch.no_grad():
        torch.testing.assert_close(loaded(x, wl).spatial, tiny_model(x, wl).spatial)
    assert not list(tmp_path.glob("*.partial"))


def test_segmentation_bundle_round_trip(tmp_path, tiny_model):
    seg = carl_geo.CARLSegmenter(tiny_model, num_classes=3, head="progressive").eval()
    bundle = carl_geo.make_bundle(seg, class_names=["water", "forest", "urban"], colors=[(0, 0, 255), (0, 128, 0), (200, 0, 0)],
                                  wavelengths=[0.49, 0.56, 0.665], band_names=["B2", "B3", "B4"], sensor="sentinel2_l2a",
                                  normalization={"mode": "fixed", "mean": 1200.0, "std": 800.0}, meta={"epochs": 3})
    path = carl_geo.save_bundle(bundle, tmp_path / "model.pt")
    # the file is plain data: weights_only loading works
    raw = torch.load(path, map_location="cpu", weights_only=True)
    assert raw["format"] == "carl_geo" and raw["kind"] == "segmentation"
    back = carl_geo.load_bundle(path)
    assert back.task == "segmentation" and back.class_names == ["water", "forest", "urban"]
    assert back.colors[0] == (0, 0, 255) and back.normalization["mean"] == 1200.0
    assert back.wavelengths == [0.49, 0.56, 0.665] and back.meta == {"epochs": 3}
    x = torch.randn(1, 3, 20, 20)
    with torch.no_grad():
        torch.testing.assert_close(back.model(x, back.wavelengths), seg(x, bundle.wavelengths))


def test_backbone_file_loads_as_feature_bundle(tmp_path, tiny_model):
    path = carl_geo.save_carl(tiny_model, tmp_path / "b.safetensors")
    bundle = carl_geo.load_bundle(path)
    assert bundle.task == "features" and bundle.num_outputs == 128
    assert bundle.normalization == {"mode": "scene"}


def test_bundle_validation(tiny_model):
    seg = carl_geo.CARLSegmenter(tiny_model, num_classes=2)
    with pytest.raises(ValueError, match="3 class names for a 2-class model"):
        carl_geo.make_bundle(seg, class_names=["a", "b", "c"])
    with pytest.raises(ValueError, match="normalization mode"):
        carl_geo.make_bundle(seg, normalization={"mode": "per-band"})
