"""Output-path safety (issue #20, items 3 and 4, and --overwrite): real paths, VRT sources,
sidecars of replaced outputs, atomic writes."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import rasterio
import rasterio.shutil
from rasterio.enums import Resampling

from carl_geo.errors import OutputPathError
from carl_geo.io.output_paths import atomic_path, check_outputs, raster_files, reads_of
from user_files import fingerprint, partial_files, run_cli, save_model, write_scene

FAST = ["--tile-size", "32", "--overlap", "8", "--device", "cpu", "--quiet"]


def test_raster_files_lists_vrt_sources_and_sidecars(tmp_path: Path) -> None:
    scene = write_scene(tmp_path / "scene.tif")
    vrt = tmp_path / "stack.vrt"
    rasterio.shutil.copy(scene, vrt, driver="VRT")
    assert {p.resolve() for p in raster_files(vrt)} == {vrt.resolve(), scene.resolve()}
    (tmp_path / "scene.tif.aux.xml").write_text("<PAMDataset/>")
    assert (tmp_path / "scene.tif.aux.xml").resolve() in {p.resolve() for p in raster_files(scene)}
    assert raster_files(tmp_path / "missing.tif") == []


def test_check_outputs_compares_real_paths(tmp_path: Path) -> None:
    scene = write_scene(tmp_path / "scene.tif")
    (tmp_path / "sub").mkdir()
    link = tmp_path / "sub" / "link.tif"
    link.symlink_to(scene)
    reads = reads_of([("input raster", link)])
    for out in (scene, tmp_path / "sub" / ".." / "scene.tif", link):
        with pytest.raises(OutputPathError, match="would destroy it"):
            check_outputs([("output", out)], reads)
    assert check_outputs([("output", tmp_path / "new.tif")], reads) == [tmp_path / "new.tif"]
    # writing x.tif would remove / replace x.tif.ovr: refused when that is a file the run reads
    with pytest.raises(OutputPathError, match="would replace"):
        check_outputs([("output", tmp_path / "a.tif")], [("overview file", tmp_path / "a.tif.ovr")])


def test_check_outputs_overwrite_folder_and_duplicates(tmp_path: Path) -> None:
    old = tmp_path / "old.tif"
    old.write_bytes(b"x")
    with pytest.raises(OutputPathError, match="exists; pass overwrite=True"):
        check_outputs([("output", old)], [], overwrite=False)
    assert check_outputs([("output", old)], [], overwrite=True) == [old]
    with pytest.raises(OutputPathError, match="is a folder"):
        check_outputs([("output", tmp_path)], [])
    with pytest.raises(FileNotFoundError, match="does not exist"):
        check_outputs([("output", tmp_path / "no" / "o.tif")], [])
    with pytest.raises(OutputPathError, match="same file"):
        check_outputs([("output", tmp_path / "a.tif"), ("quick look PNG", tmp_path / "a.tif")], [])


def test_atomic_path_keeps_the_old_file_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "model.pt"
    target.write_bytes(b"old")
    with pytest.raises(KeyboardInterrupt), atomic_path(target) as tmp:
        tmp.write_bytes(b"half")
        raise KeyboardInterrupt  # Ctrl-C / SIGTERM while writing
    assert target.read_bytes() == b"old" and partial_files(tmp_path) == []
    with atomic_path(target) as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".model.pt.") and tmp.suffix == ".pt"
        tmp.write_bytes(b"new")
    assert target.read_bytes() == b"new" and partial_files(tmp_path) == []
    link = tmp_path / "link.pt"
    link.symlink_to(target)
    with atomic_path(link) as tmp:  # replaces the link, never the file it points to
        tmp.write_bytes(b"via link")
    assert target.read_bytes() == b"new" and not link.is_symlink() and link.read_bytes() == b"via link"


@pytest.fixture
def scene_and_model(tmp_path: Path) -> tuple[Path, Path]:
    return write_scene(tmp_path / "scene.tif"), save_model(tmp_path / "model.pt")


def test_existing_output_needs_overwrite(scene_and_model, tmp_path: Path, capsys) -> None:
    scene, model = scene_and_model
    out, png = tmp_path / "map.tif", tmp_path / "map.png"
    assert run_cli(["predict", scene, out, "-m", model, *FAST], capsys)[0] == 0
    png.write_bytes(b"my picture")
    before = fingerprint(out)
    for argv in (["predict", scene, out, "-m", model, *FAST],
                 ["predict", scene, tmp_path / "other.tif", "-m", model, *FAST, "--quicklook", png]):
        code, err, _ = run_cli(argv, capsys)
        assert code == 2 and len(err) == 1 and "exists; pass --overwrite" in err[0], err
    assert fingerprint(out) == before and png.read_bytes() == b"my picture"
    assert not (tmp_path / "other.tif").exists()
    code, _, _ = run_cli(["predict", scene, out, "-m", model, *FAST, "--overwrite", "--quicklook", png], capsys)
    assert code == 0 and png.read_bytes()[:4] == b"\x89PNG"


def test_replacing_an_output_removes_its_stale_sidecars(scene_and_model, tmp_path: Path, capsys) -> None:
    """Item 4: the old .ovr would show the previous map when zoomed out; the old .aux.xml would
    override the new file's nodata and class names."""
    scene, model = scene_and_model
    out = tmp_path / "map.tif"
    assert run_cli(["predict", scene, out, "-m", model, *FAST], capsys)[0] == 0
    ovr = tmp_path / "map.tif.ovr"
    with rasterio.open(out) as src:
        profile = {**src.profile, "width": src.width // 2, "height": src.height // 2}
        profile["transform"] = src.transform @ src.transform.scale(2, 2)
        small = src.read(out_shape=(1, src.height // 2, src.width // 2), resampling=Resampling.nearest)
    with rasterio.open(ovr, "w", **{**profile, "driver": "GTiff"}) as dst:  # an external overview of the old map
        dst.write(np.full_like(small, 1))
    (tmp_path / "map.tif.aux.xml").write_text(
        '<PAMDataset><Metadata><MDI key="CLASS_NAMES">["stale"]</MDI></Metadata>'
        '<PAMRasterBand band="1"><NoDataValue>0</NoDataValue></PAMRasterBand></PAMDataset>')
    with rasterio.open(out) as src:  # GDAL does use them
        assert src.overviews(1) == [2] and src.nodata == 0 and src.tags()["CLASS_NAMES"] == '["stale"]'

    assert run_cli(["predict", scene, out, "-m", model, *FAST, "--overwrite"], capsys)[0] == 0
    assert not ovr.exists() and not (tmp_path / "map.tif.aux.xml").exists()
    with rasterio.open(out) as src:
        assert src.overviews(1) == [] and src.nodata == 255
        assert src.tags()["CLASS_NAMES"] == '["field", "road"]'
    # a replaced COG keeps its own (internal) overviews and gets no stale external ones
    assert run_cli(["predict", scene, out, "-m", model, *FAST, "--overwrite", "--cog"], capsys)[0] == 0
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("map.tif")) == ["map.tif"]


def test_python_api_protects_inputs_too(scene_and_model, tmp_path: Path) -> None:
    import carl_geo
    from carl_geo.inference import predict_raster

    scene, model = scene_and_model
    link = tmp_path / "link.tif"
    link.symlink_to(scene)
    bundle = carl_geo.load_bundle(model)
    before = fingerprint(scene), fingerprint(model)
    for src, dst in ((link, scene), (scene, link), (scene, model)):
        with pytest.raises(OutputPathError, match="would destroy it"):
            predict_raster(bundle, src, dst, device="cpu", tile_size=32, overlap=8)
    assert (fingerprint(scene), fingerprint(model)) == before
    assert os.path.islink(link)


@pytest.mark.parametrize("name,kind", [("map.png", "picture"), ("map.gpkg", "vector file"), ("map.PT", "model file"),
                                       ("map.vrt", "raster of another format")])
def test_a_map_named_like_another_kind_of_file_is_refused(name: str, kind: str, scene_and_model, tmp_path: Path,
                                                           capsys) -> None:
    """predict writes a GeoTIFF: under a picture's, a layer's or a model's name it would be a file that neither a
    GIS nor a picture viewer opens as what the name says; refused before a pixel is read, nothing written."""
    scene, model = scene_and_model
    code, err, _ = run_cli(["predict", scene, tmp_path / name, "-m", model, *FAST], capsys)
    assert code == 2 and len(err) == 1, err
    assert f"{name} is named like a {kind}, but this run writes a GeoTIFF there: name it e.g. map.tif" in err[0], err
    assert ("--quicklook MAP.png" in err[0]) == (kind == "picture")
    assert not (tmp_path / name).exists() and partial_files(tmp_path) == []
    for fine in ("map.TIF", "map"):  # a GeoTIFF's suffixes, or none (GDAL's tools accept that too)
        code, err, _ = run_cli(["predict", scene, tmp_path / fine, "-m", model, *FAST], capsys)
        assert code == 0, err
        with rasterio.open(tmp_path / fine) as ds:
            assert ds.driver == "GTiff"
