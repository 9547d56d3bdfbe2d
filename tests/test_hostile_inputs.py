"""Careless and hostile inputs of the second battery (issue #28): each is one line (exit 2 on the command line),
in bounded time, before any work, and nothing is written."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import warnings
import zipfile
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
from shapely.geometry import box

from carl_geo.datasets.vector_labels import read_label_vector
from carl_geo.errors import CarlGeoWarning, CheckpointError, InputError, OutputPathError
from helpers import write_raster


def _cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "carl_geo.cli", *args], capture_output=True, text=True,
                          timeout=timeout)


def _one_error_line(proc: subprocess.CompletedProcess) -> str:
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    return lines[0]


def _usage_error_line(proc: subprocess.CompletedProcess) -> str:
    """argparse's answer to a bad option value: the usage, then one ``carl-geo <command>: error: ...`` line."""
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert lines[-1].startswith("carl-geo predict: error: argument --wavelengths: "), proc.stderr
    return lines[-1]


def test_negative_and_mixed_unit_wavelengths_are_one_line(tmp_path: Path) -> None:
    line = _usage_error_line(_cli("predict", "a.tif", str(tmp_path / "b.tif"), "--model", "m.pt",
                                "--wavelengths", "-0.49,0.56,0.665"))
    assert "must be positive" in line and "-0.49" in line
    line = _usage_error_line(_cli("predict", "a.tif", str(tmp_path / "b.tif"), "--model", "m.pt",
                                "--wavelengths", "0.49,560,0.665"))
    assert "mix units" in line and "560 looks like nanometres" in line
    assert not (tmp_path / "b.tif").exists()


def test_quicklook_extension_is_checked_before_predicting(tmp_path: Path) -> None:
    raster = write_raster(tmp_path / "in.tif", np.ones((3, 16, 16), np.uint16))
    start = time.time()
    line = _one_error_line(_cli("predict", str(raster), str(tmp_path / "out.tif"), "--model", str(tmp_path / "m.pt"),
                                "--quicklook", str(tmp_path / "look.bmp")))
    assert "must end in one of .png" in line and time.time() - start < 30
    assert not (tmp_path / "out.tif").exists()


def test_control_characters_from_files_do_not_reach_the_terminal(tmp_path: Path) -> None:
    raster = write_raster(tmp_path / "in.tif", np.ones((3, 16, 16), np.uint16), descriptions=["B1", "B2", "B3"])
    proc = _cli("predict", str(raster), str(tmp_path / "out.tif"), "--model", str(tmp_path / "m.pt"),
                "--bands", "B\x1b[2J")
    assert proc.returncode != 0 and "\x1b" not in proc.stderr + proc.stdout
    from carl_geo.cli_runtime import printable

    assert printable("red\x1b[31m\r") == "red\\x1b[31m\\x0d"


def test_features_without_geometry_are_counted_per_class(tmp_path: Path) -> None:
    frame = gpd.GeoDataFrame({"c": ["a", "b", "b", "c"]}, geometry=[box(0, 0, 1, 1), None, box(1, 1, 2, 2), None],
                             crs="EPSG:32633")
    frame.to_file(tmp_path / "labels.gpkg")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = read_label_vector(tmp_path / "labels.gpkg", "c")
    notes = [str(w.message) for w in caught if issubclass(w.category, CarlGeoWarning)]
    assert len(out) == 2 and len(notes) == 1
    assert "2 feature(s)" in notes[0] and "(b: 1, c: 1)" in notes[0] and "class(es) c have no polygon left" in notes[0]


def test_labels_inside_a_zip_are_read_as_predict_reads_rasters(tmp_path: Path) -> None:
    frame = gpd.GeoDataFrame({"c": ["a", "b"]}, geometry=[box(0, 0, 1, 1), box(1, 1, 2, 2)], crs="EPSG:32633")
    frame.to_file(tmp_path / "labels.gpkg")
    with zipfile.ZipFile(tmp_path / "labels.zip", "w") as z:
        z.write(tmp_path / "labels.gpkg", "labels.gpkg")
    out = read_label_vector(f"/vsizip/{tmp_path / 'labels.zip'}/labels.gpkg", "c")
    assert sorted(out["c"]) == ["a", "b"]


def test_an_unwritable_model_folder_is_refused_before_training(tmp_path: Path) -> None:
    from carl_geo.polygon_training import train_from_polygons
    from carl_geo.sample_data import nc_landsat7

    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    scene = nc_landsat7()
    start = time.time()
    with pytest.raises(OutputPathError, match="cannot write the model into"):
        train_from_polygons(scene.image, scene.polygons, scene.label_field, blocker / "model.pt", max_steps=2)
    assert time.time() - start < 20 and blocker.read_text() == "not a folder"


def test_ten_thousand_bands_are_refused_at_once(tmp_path: Path) -> None:
    from carl_geo.io.band_metadata import MAX_INPUT_BANDS, resolve_wavelengths

    raster = write_raster(tmp_path / "many.tif", np.ones((MAX_INPUT_BANDS + 1, 2, 2), np.uint8), tiled=False)
    start = time.time()
    with pytest.raises(InputError, match=f"{MAX_INPUT_BANDS + 1} bands selected"):
        resolve_wavelengths(raster, wavelengths=list(np.linspace(0.4, 2.5, MAX_INPUT_BANDS + 1)))
    assert time.time() - start < 10


def test_a_zip_bomb_model_is_refused_before_it_unpacks(tmp_path: Path) -> None:
    import resource

    from carl_geo.models import load_bundle

    bomb = tmp_path / "bomb.pt"
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("archive/data.pkl", b"\x80\x02}q\x00.")
        with z.open("archive/data/0", "w") as member:  # 256 MiB of zeros, about 0.25 MiB compressed
            chunk = bytes(2**20)
            for _ in range(256):
                member.write(chunk)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(CheckpointError, match="unpacks to 256 MiB"):
        load_bundle(bomb)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 100 * 1024  # KiB: nothing was inflated


def test_gdal_scale_and_offset_tags_are_applied_on_read(tmp_path: Path) -> None:
    """Issue #28: a DN raster with scale / offset tags maps like the reflectance it encodes (a model with stored
    statistics of reflectance); the output records what was applied, and training says so in its notices."""
    import json

    import rasterio
    import torch

    from carl_geo.inference import predict_raster
    from carl_geo.inference.predictor import read_window, scale_offset
    from carl_geo.models import CARL, CARLSegmenter, make_bundle, tiny_config

    rng = np.random.default_rng(0)
    reflectance = rng.uniform(0.02, 0.45, (4, 40, 48)).astype(np.float32)
    dn = np.round((reflectance + 0.2) / 2.75e-5).astype(np.uint16)  # Landsat Collection 2: DN x 2.75e-5 - 0.2
    refl_path = write_raster(tmp_path / "refl.tif", (dn * np.float32(2.75e-5) - np.float32(0.2)).astype(np.float32))
    dn_path = write_raster(tmp_path / "dn.tif", dn)
    with rasterio.open(dn_path, "r+") as ds:
        ds.scales, ds.offsets = (2.75e-5,) * 4, (-0.2,) * 4
    with rasterio.open(dn_path) as ds:
        data, valid = read_window(ds, [1, 2, 3, 4], rasterio.windows.Window(0, 0, 48, 40))
        assert data.dtype == np.float32 and valid.all() and scale_offset(ds, [1, 2]) is not None
        np.testing.assert_allclose(data, reflectance, atol=3e-5)
    torch.manual_seed(0)
    bundle = make_bundle(CARLSegmenter(CARL(tiny_config()), 3).eval(), class_names=["a", "b", "c"],
                         wavelengths=[0.49, 0.56, 0.665, 0.842], normalization={"mode": "fixed", "mean": 0.235, "std": 0.124})
    with warnings.catch_warnings():
        warnings.simplefilter("error", CarlGeoWarning)  # no "another scale" warning: the tags were applied
        warnings.filterwarnings("ignore", "the input's bands carry no wavelengths", CarlGeoWarning)
        a = predict_raster(bundle, refl_path, tmp_path / "a.tif", tile_size=32, overlap=8, device="cpu")
        b = predict_raster(bundle, dn_path, tmp_path / "b.tif", tile_size=32, overlap=8, device="cpu")
    with rasterio.open(a.path) as fa, rasterio.open(b.path) as fb:
        assert (fa.read(1) == fb.read(1)).mean() > 0.99
        assert "CARL_SCALE_OFFSET" not in fa.tags()
        assert json.loads(fb.tags()["CARL_SCALE_OFFSET"])["offset"] == pytest.approx([-0.2] * 4)


def test_a_stalled_vsicurl_input_ends_by_itself_in_one_line(tmp_path: Path) -> None:
    """Issue #28: a /vsicurl/ input on a server that accepts and never answers ends with one line (GDAL's HTTP
    timeouts, which the command line sets when the user has not; shortened here) instead of blocking in C."""
    import os
    import socket
    import threading

    from carl_geo.cli_runtime import GDAL_NETWORK_DEFAULTS
    from carl_geo.models import CARL, CARLSegmenter, make_bundle, save_bundle, tiny_config

    assert int(GDAL_NETWORK_DEFAULTS["GDAL_HTTP_TIMEOUT"]) <= 120
    model = save_bundle(make_bundle(CARLSegmenter(CARL(tiny_config()), 2), class_names=["a", "b"],
                                    wavelengths=[0.49, 0.56, 0.665]), tmp_path / "m.pt")
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.5)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])  # never answered
            except OSError:
                pass

    threading.Thread(target=accept, daemon=True).start()
    try:
        url = f"/vsicurl/http://127.0.0.1:{server.getsockname()[1]}/scene.tif"
        env = {**os.environ, "GDAL_HTTP_TIMEOUT": "3", "GDAL_HTTP_MAX_RETRY": "0"}
        start = time.time()
        proc = subprocess.run([sys.executable, "-m", "carl_geo.cli", "predict", url, str(tmp_path / "o.tif"),
                               "--model", str(model)], capture_output=True, text=True, timeout=120, env=env)
        assert time.time() - start < 90
        lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
        assert proc.returncode != 0 and len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
        assert "scene.tif" in lines[0] and held  # it did reach the server, and gave up on it
        assert not (tmp_path / "o.tif").exists()
        # Ctrl-C / SIGTERM while GDAL waits inside C: one line and the signal's exit status, never the traceback
        # of an exception raised in GDAL's logging callback ("Exception ignored in: 'rasterio._env.log_error'")
        for sig, code, word in ((signal.SIGTERM, 143, "terminated"), (signal.SIGINT, 130, "interrupted")):
            child = subprocess.Popen([sys.executable, "-m", "carl_geo.cli", "predict", url, str(tmp_path / "o.tif"),
                                      "--model", str(model)], stderr=subprocess.PIPE, text=True, env=env)
            time.sleep(4)
            child.send_signal(sig)
            _, err = child.communicate(timeout=120)
            lines = [ln for ln in err.splitlines() if ln.strip()]
            assert child.returncode == code and len(lines) == 1 and word in lines[0], err
            assert "Traceback" not in err and not (tmp_path / "o.tif").exists()
    finally:
        stop.set()
        for s in held:
            s.close()
        server.close()


def test_written_files_get_the_users_permissions(tmp_path: Path) -> None:
    """Issue #28: an exported .safetensors came out 0600 (safetensors' own choice); carl_geo's writer gives a new
    file 0666 less the umask, and a replaced file keeps its mode."""
    import os
    import stat

    from carl_geo.io.output_paths import atomic_path

    new = tmp_path / "new.safetensors"
    with atomic_path(new) as tmp:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT, 0o600)
        os.close(fd)
    umask = os.umask(0o022)
    os.umask(umask)
    assert stat.S_IMODE(new.stat().st_mode) == 0o666 & ~umask
    kept = tmp_path / "kept.pt"
    kept.write_bytes(b"old")
    kept.chmod(0o640)
    with atomic_path(kept) as tmp:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT, 0o600)
        os.write(fd, b"new")
        os.close(fd)
    assert stat.S_IMODE(kept.stat().st_mode) == 0o640 and kept.read_bytes() == b"new"
