"""A model file that is not one says what it is instead, and nothing ever points to the unsafe
``weights_only=False`` (issue #20, item 8)."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest

import carl_geo
from carl_geo.models.checkpoint import CheckpointError
from user_files import run_cli, save_model, write_scene


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch /tmp/carl_geo_pwned_i20",))


@pytest.fixture(scope="module")
def not_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("models")
    files = {"empty": folder / "empty.pt", "random": folder / "random.pt", "html": folder / "download.ckpt",
             "evil": folder / "evil.pt"}
    files["empty"].write_bytes(b"")
    files["random"].write_bytes(bytes(range(7, 250)) * 8)
    files["html"].write_text("<!DOCTYPE html><html><body>429 Too Many Requests</body></html>")
    with open(files["evil"], "wb") as f:
        pickle.dump({"state_dict": {}, "x": _Evil()}, f)
    files["geotiff"] = write_scene(folder / "scene.tif")
    return files


@pytest.mark.parametrize("kind, says", [
    ("empty", "it is an empty file (0 bytes"),
    ("random", "neither a zip archive (torch.save) nor a pickle"),
    ("html", "an error page saved instead of the download"),
    ("geotiff", "it is a TIFF / GeoTIFF image"),
    ("evil", "refusing to load"),
])
def test_what_the_file_is_not(kind: str, says: str, not_models: dict[str, Path], tmp_path: Path, capsys) -> None:
    path = not_models[kind]
    with pytest.raises(CheckpointError) as e:
        carl_geo.load_bundle(path)
    text = str(e.value)
    assert says in text and str(path) in text
    assert "weights_only=False" not in text and "weights_only" not in text and "trust" not in text
    assert not os.path.exists("/tmp/carl_geo_pwned_i20")
    code, err, _ = run_cli(["predict", not_models["geotiff"], tmp_path / "o.tif", "-m", path, "--device", "cpu"],
                           capsys)
    assert code == 2 and len(err) == 1 and says in err[0] and "weights_only" not in err[0]


def test_safetensors_with_another_extension_still_loads(tmp_path: Path) -> None:
    backbone = carl_geo.CARL(carl_geo.tiny_config())
    path = carl_geo.save_carl(backbone, tmp_path / "backbone.safetensors")
    renamed = path.rename(tmp_path / "backbone.bin")
    assert carl_geo.load_bundle(renamed).task == "features"


def test_model_file_write_is_atomic(tmp_path: Path, monkeypatch) -> None:
    import torch

    path = save_model(tmp_path / "model.pt")
    before = path.read_bytes()

    def full_disk(obj, f, *args, **kwargs):
        Path(f).write_bytes(b"half a model")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(OSError, match="No space left"):
        save_model(path, seed=1)
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["model.pt"]
