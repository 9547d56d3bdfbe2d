"""Every failure of ``carl-geo`` is one clear line (issue #20, items 6, 7 and 12): I/O errors name
the file and the real cause, --debug shows the traceback, a bug keeps it, SIGTERM cleans up like
Ctrl-C, and --help / argument errors do not load torch."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import rasterio.errors
import rasterio.shutil

from carl_geo.errors import CarlGeoError

from user_files import WAVELENGTHS, fingerprint, partial_files, run_cli, save_model, write_scene

ROOT = Path(__file__).resolve().parents[1]
FAST = ["--tile-size", "32", "--overlap", "8", "--device", "cpu", "--quiet"]


@pytest.fixture
def scene_and_model(tmp_path: Path) -> tuple[Path, Path]:
    return write_scene(tmp_path / "scene.tif"), save_model(tmp_path / "model.pt")


def _gdal_write_error() -> rasterio.errors.RasterioIOError:
    """What rasterio raises when GDAL cannot write a block (the OS's reason only goes to GDAL's log)."""
    from rasterio._err import CPLE_AppDefinedError

    try:
        raise CPLE_AppDefinedError(1, 1, "TIFFAppendToStrip:Write error at scanline 256")
    except CPLE_AppDefinedError as cause:
        err = rasterio.errors.RasterioIOError("Write failed. See previous exception for details.")
        err.__cause__ = cause
        return err


def test_corrupt_geotiff_and_broken_vrt(scene_and_model, tmp_path: Path, capsys) -> None:
    scene, model = scene_and_model
    corrupt = tmp_path / "corrupt.tif"
    corrupt.write_bytes(scene.read_bytes()[:600])
    code, err, _ = run_cli(["predict", corrupt, tmp_path / "o.tif", "-m", model, *FAST], capsys)
    assert code == 1 and len(err) == 1 and f"cannot read raster {corrupt}" in err[0] and "TIFF" in err[0], err
    vrt = tmp_path / "stack.vrt"
    rasterio.shutil.copy(scene, vrt, driver="VRT")
    vrt.write_text(vrt.read_text().replace("scene.tif", "gone.tif"))
    wl = ",".join(map(str, WAVELENGTHS))
    code, err, _ = run_cli(["predict", vrt, tmp_path / "o.tif", "-m", model, "--wavelengths", wl, *FAST], capsys)
    assert code == 1 and len(err) == 1 and "gone.tif: No such file or directory" in err[0], err
    assert "Traceback" not in "".join(err) and not (tmp_path / "o.tif").exists()
    # train reads the raster through the same wrapper
    code, err, _ = run_cli(["train", "--raster", corrupt, "--labels", vrt, "--label-field", "x", "--out",
                            tmp_path / "m.pt"], capsys)
    assert code != 0 and len(err) == 1 and "Traceback" not in err[0]


@pytest.mark.parametrize("problem", ["disk full", "read-only"])
def test_write_failure_names_the_output_and_the_cause(problem: str, scene_and_model, tmp_path: Path, capsys,
                                                      monkeypatch) -> None:
    """Disk full during the write, or a read-only folder: one line with the OS's reason, the old
    output byte for byte as it was, no temporary file."""
    import rasterio.io

    from carl_geo.io import failures

    scene, model = scene_and_model
    out = tmp_path / "map.tif"
    assert run_cli(["predict", scene, out, "-m", model, *FAST], capsys)[0] == 0
    before = fingerprint(out)
    real_statvfs = os.statvfs

    def statvfs(path):
        st = real_statvfs(path)
        flag = st.f_flag | os.ST_RDONLY if problem == "read-only" else st.f_flag
        return os.statvfs_result((st.f_bsize, st.f_frsize, st.f_blocks, st.f_bfree,
                                  0 if problem == "disk full" else st.f_bavail, st.f_files, st.f_ffree, st.f_favail,
                                  flag, st.f_namemax))

    def fail(*args, **kwargs):
        raise _gdal_write_error()

    monkeypatch.setattr(failures.os, "statvfs", statvfs)
    monkeypatch.setattr(rasterio.io.DatasetWriter, "write", fail)
    code, err, _ = run_cli(["predict", scene, out, "-m", model, *FAST, "--overwrite"], capsys)
    reason = "No space left on device" if problem == "disk full" else "Read-only file system"
    assert code == 1 and len(err) == 1 and f"cannot write {out}: {reason}" in err[0], err
    assert fingerprint(out) == before and partial_files(tmp_path) == []


def test_read_failure_midway_keeps_the_previous_output(scene_and_model, tmp_path: Path, capsys,
                                                       monkeypatch) -> None:
    from rasterio._err import CPLE_AppDefinedError

    from carl_geo.inference import predictor

    scene, model = scene_and_model
    out = tmp_path / "map.tif"
    assert run_cli(["predict", scene, out, "-m", model, *FAST], capsys)[0] == 0
    before, calls, real = fingerprint(out), [0], predictor.read_window

    def read_window(*args, **kwargs):
        calls[0] += 1
        if calls[0] == 2:  # the second of the two tile rows
            raise CPLE_AppDefinedError(1, 1, f"{scene}: TIFFReadEncodedStrip() failed.")
        return real(*args, **kwargs)

    monkeypatch.setattr(predictor, "read_window", read_window)
    code, err, _ = run_cli(["predict", scene, out, "-m", model, *FAST, "--overwrite", "--normalization", "0,1"],
                           capsys)
    assert code == 1 and len(err) == 1 and f"cannot read {scene}" in err[0] and "TIFFReadEncodedStrip" in err[0]
    assert fingerprint(out) == before and partial_files(tmp_path) == []


def test_debug_shows_the_traceback(scene_and_model, tmp_path: Path, capsys, monkeypatch) -> None:
    scene, model = scene_and_model
    argv = ["predict", scene, tmp_path / "o.tif", "-m", model, "--wavelengths", "0.5,0.6", *FAST]
    code, err, _ = run_cli([*argv, "--debug"], capsys)
    assert code == 2 and err[0].startswith("Traceback") and "WavelengthError" in "\n".join(err)
    assert err[-1].startswith("carl-geo predict: error: raster") and "4 bands but 2 wavelengths" in err[-1]
    monkeypatch.setenv("CARL_GEO_DEBUG", "1")
    assert run_cli(argv, capsys)[1][0].startswith("Traceback")
    monkeypatch.setenv("CARL_GEO_DEBUG", "0")
    assert len(run_cli(argv, capsys)[1]) == 1


def test_a_bug_is_not_turned_into_an_error_line(scene_and_model, tmp_path: Path, monkeypatch, capsys) -> None:
    from carl_geo.cli import main
    from carl_geo.inference import predictor
    from carl_geo.polygon_training import polygons

    scene, model = scene_and_model

    def broken(*args, **kwargs):
        return None.shape  # an AttributeError: a bug, not the user's fault

    monkeypatch.setattr(predictor, "predict_raster", broken)
    with pytest.raises(AttributeError):
        main(["predict", str(scene), str(tmp_path / "o.tif"), "-m", str(model), *FAST])
    # bad input is carl_geo's CarlGeoError: one line; anything else (a plain ValueError too) is a bug
    monkeypatch.setattr(polygons, "train_from_polygons", lambda *a, **k: (_ for _ in ()).throw(CarlGeoError("bad x")))
    argv = ["train", "--raster", scene, "--labels", scene, "--label-field", "c", "--out", tmp_path / "m.pt"]
    code, err, _ = run_cli(argv, capsys)
    assert code == 2 and err[-1] == "carl-geo train: error: bad x"
    for bug in (broken, lambda *a, **k: (_ for _ in ()).throw(ValueError("not the user's fault"))):
        monkeypatch.setattr(polygons, "train_from_polygons", bug)
        with pytest.raises((AttributeError, ValueError)) as e:
            main([str(a) for a in argv])
        assert not isinstance(e.value, CarlGeoError)


@pytest.mark.slow
def test_sigterm_cleans_up_like_ctrl_c(scene_and_model, tmp_path: Path) -> None:
    """SIGTERM (timeouts, kill, SLURM) halfway through: exit 143, one line, no hidden .partial file,
    the previous output unchanged."""
    scene, model = scene_and_model
    out = tmp_path / "map.tif"
    out.write_bytes(b"previous map")
    script = textwrap.dedent("""
        import os, signal, sys
        from carl_geo.inference import runner
        real, calls = runner.ModelRunner.predict, [0]
        def predict(self, *args, **kwargs):
            calls[0] += 1
            if calls[0] == 3:
                os.kill(os.getpid(), signal.SIGTERM)
            return real(self, *args, **kwargs)
        runner.ModelRunner.predict = predict
        from carl_geo.cli import main
        sys.exit(main(sys.argv[1:]))
    """)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", script, "predict", str(scene), str(out), "-m", str(model), *FAST,
                           "--batch-size", "1", "--overwrite"], env=env, capture_output=True, text=True, timeout=300)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 143 and lines == ["carl-geo predict: terminated (SIGTERM)"], proc.stderr
    assert out.read_bytes() == b"previous map" and partial_files(tmp_path) == []


def test_help_and_argument_errors_do_not_load_torch() -> None:
    """Item 12: 14.3-14.9 s per call before, 0.27-0.31 s after (benchmarks/bench_cli_startup.py);
    here the mechanism: none of the heavy packages is imported."""
    script = textwrap.dedent("""
        import sys
        import carl_geo
        from carl_geo.cli import main
        for argv in (["--help"], ["predict", "--help"], ["train", "--help"], ["demo", "--help"],
                     ["geobench", "--help"], ["export", "--help"], ["predict"], ["train", "--epochs", "x"]):
            try:
                main(argv)
            except SystemExit:
                pass
        heavy = ("torch", "lightning", "rasterio", "torchgeo", "geopandas", "timm", "matplotlib")
        print(sorted(m for m in heavy if m in sys.modules))
    """)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "[]"
    assert "carl-geo predict: error: the following arguments are required" in proc.stderr
    assert "carl-geo train: error: argument --epochs: expected a positive integer, got 'x'" in proc.stderr


def test_lazy_package_still_exposes_its_api() -> None:
    import carl_geo
    import carl_geo.inference
    import carl_geo.polygon_training

    assert {"CARL", "load_bundle", "get_sensor"} <= set(dir(carl_geo))
    assert carl_geo.CARL is carl_geo.models.CARL and callable(carl_geo.inference.predict_raster)
    assert carl_geo.polygon_training.TrainingCancelled is carl_geo.inference.PredictionCancelled  # one Cancelled
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        carl_geo.nope  # noqa: B018


def test_a_broken_subcommand_module_fails_loudly(monkeypatch) -> None:
    """A sub-command module that cannot be imported is a bug of the installation: its ImportError (with
    traceback) reaches the user instead of the sub-command silently missing from --help."""
    from carl_geo import cli

    monkeypatch.setattr(cli, "SUBCOMMAND_MODULES", (*cli.SUBCOMMAND_MODULES, "carl_geo.no_such_module"))
    with pytest.raises(ModuleNotFoundError, match="carl_geo.no_such_module"):
        cli.main(["--help"])
    from carl_geo.errors import CarlGeoError as Family

    assert cli.UserError is Family  # the old name of the family's root, kept for imports
