"""Output-path safety against hostile inputs (issue #28, "Nothing lost"): a file the run reads only
indirectly (a nested VRT's GeoTIFF, the archive of a ``/vsizip/`` path, the CSV of an OGR VRT, the
layers of a Shapefile folder), outputs and inputs that are not regular files, and two runs writing
the same new file at once. Each must end in a one-line error that names both files, with every
file byte for byte as it was and no temporary file left."""

from __future__ import annotations

import errno
import gzip
import os
import socket
import stat
import tarfile
import threading
import zipfile
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import rasterio
import rasterio.shutil

from carl_geo.errors import CarlGeoError, OutputPathError
from carl_geo.io.output_paths import atomic_path, check_input_file, check_outputs, raster_files, reads_of
from carl_geo.polygon_training.outputs import check_training_paths, vector_files
from user_files import WAVELENGTHS, fingerprint, partial_files, run_cli, save_model, write_scene

FAST = ["--tile-size", "32", "--overlap", "8", "--device", "cpu", "--quiet"]
needs_fifo = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this system")


def _refused(call: Callable[[], Any], exc: type[BaseException], *names: object) -> str:
    """Run ``call`` (in a thread, so that a call that blocks on a FIFO fails instead of hanging), expect
    ``exc`` with a one-line message naming every one of ``names``; returns the message."""
    caught: list[BaseException] = []

    def target() -> None:
        try:
            call()
        except BaseException as e:  # noqa: BLE001 (handed to the test thread)
            caught.append(e)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(timeout=60)
    assert not thread.is_alive(), "the check blocked (opened a FIFO?)"
    assert len(caught) == 1 and isinstance(caught[0], exc), caught
    message = str(caught[0])
    assert "\n" not in message, message
    for name in names:
        assert str(name) in message, (name, message)
    return message


def _nested_vrt(scene: Path, folder: Path) -> tuple[Path, Path]:
    """``outer.vrt`` -> ``inner.vrt`` -> ``scene``, relative to their folder."""
    inner = folder / "inner.vrt"
    rasterio.shutil.copy(scene, inner, driver="VRT")
    text = inner.read_text()
    assert f">{scene.name}<" in text
    outer = folder / "outer.vrt"
    outer.write_text(text.replace(f">{scene.name}<", f">{inner.name}<"))
    return outer, inner


def test_nested_vrt_source_is_protected(tmp_path: Path, capsys) -> None:
    """Item 1: GDAL's file list of a VRT names its sources, not theirs: sources are followed at any depth."""
    scene = write_scene(tmp_path / "scene.tif")
    outer, inner = _nested_vrt(scene, tmp_path)
    with rasterio.open(outer) as ds:
        assert scene.name not in {Path(f).name for f in ds.files}  # what GDAL alone would protect
        assert ds.read().shape == (4, 40, 56)
    assert {p.resolve() for p in raster_files(outer)} >= {outer.resolve(), inner.resolve(), scene.resolve()}
    before = fingerprint(scene)
    for overwrite in (True, False):
        message = _refused(partial(check_outputs, [("output", scene)], reads_of([("input raster", outer)]),
                                   overwrite=overwrite), OutputPathError, scene, outer)
        assert "would destroy it" in message
    # a VRT cycle (a.vrt -> b.vrt -> a.vrt) ends
    a, b = tmp_path / "a.vrt", tmp_path / "b.vrt"
    a.write_text(outer.read_text().replace(">inner.vrt<", ">b.vrt<"))
    b.write_text(outer.read_text().replace(">inner.vrt<", ">a.vrt<"))
    assert {p.name for p in raster_files(a)} <= {"a.vrt", "b.vrt"}
    # the command line: one line, exit status 2, the GeoTIFF untouched
    model = save_model(tmp_path / "model.pt")
    code, err, _ = run_cli(["predict", outer, scene, "-m", model, "--wavelengths", ",".join(map(str, WAVELENGTHS)),
                            *FAST, "--overwrite"], capsys)
    assert code == 2 and len(err) == 1 and str(scene) in err[0] and str(outer) in err[0], err
    assert fingerprint(scene) == before and partial_files(tmp_path) == []


def test_archive_of_a_vsi_input_is_protected(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Item 2: /vsizip/, /vsitar/ and /vsigzip/ inputs read their archive."""
    scene = write_scene(tmp_path / "scene.tif")
    archive = tmp_path / "scenes.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.write(scene, "inner/scene.tif")
    tar = tmp_path / "scenes.tar"
    with tarfile.open(tar, "w") as t:
        t.add(scene, "scene.tif")
    gz = tmp_path / "scene.tif.gz"
    gz.write_bytes(gzip.compress(scene.read_bytes()))
    cases = [(f"/vsizip/{archive}/inner/scene.tif", archive), (f"/vsizip/{{{archive}}}/inner/scene.tif", archive),
             (f"/vsitar/{tar}/scene.tif", tar), (f"/vsigzip/{gz}", gz), ("/vsizip/scenes.zip/inner/scene.tif", archive)]
    monkeypatch.chdir(tmp_path)  # the last one is relative, as GDAL reads it
    for src, protected in cases:
        with rasterio.open(src) as ds:  # GDAL does read the scene through the archive
            assert ds.count == 4
        before = fingerprint(protected)
        for overwrite in (True, False):
            _refused(partial(check_outputs, [("output", protected)], reads_of([("input raster", src)]),
                             overwrite=overwrite), OutputPathError, protected, src)
        assert fingerprint(protected) == before
    # labels inside an archive, through the training check
    labels = f"/vsizip/{archive}/inner/labels.gpkg"
    _refused(lambda: check_training_paths(scene, labels, archive), OutputPathError, archive, labels)
    assert check_outputs([("output", tmp_path / "new.tif")], reads_of([("input raster", cases[0][0])]))
    assert raster_files("/vsimem/nothing.tif") == []


def _polygons(path: Path, driver: str | None = None) -> None:
    import geopandas as gpd
    from shapely.geometry import box

    frame = gpd.GeoDataFrame({"label": [1, 2]}, geometry=[box(400000, 5499500, 400300, 5499800),
                                                          box(400400, 5499300, 400800, 5499700)],
                             crs="EPSG:32633")
    frame.to_file(path, driver=driver)


def test_csv_of_an_ogr_vrt_label_file_is_protected(tmp_path: Path) -> None:
    """Item 3: an OGR VRT's <SrcDataSource> (relativeToVRT resolved against the VRT's folder) is read."""
    import geopandas as gpd

    scene = write_scene(tmp_path / "scene.tif")
    (tmp_path / "data").mkdir()
    (tmp_path / "vrt").mkdir()
    csv = tmp_path / "data" / "fields.csv"
    csv.write_text('WKT,label\n"POLYGON ((400000 5499500,400300 5499500,400300 5499800,400000 5499500))",1\n')
    vrt = tmp_path / "vrt" / "labels.vrt"
    vrt.write_text('<OGRVRTDataSource>\n  <OGRVRTLayer name="fields">\n'
                   '    <SrcDataSource relativeToVRT="1">../data/fields.csv</SrcDataSource>\n'
                   '    <LayerSRS>EPSG:32633</LayerSRS>\n'
                   '    <GeometryField encoding="WKT" field="WKT"/>\n  </OGRVRTLayer>\n</OGRVRTDataSource>\n')
    assert len(gpd.read_file(vrt)) == 1  # OGR does read the CSV through the VRT
    assert csv.resolve() in {p.resolve() for p in vector_files(vrt)}
    before = fingerprint(csv)
    for overwrite in (True, False):
        message = _refused(partial(check_training_paths, scene, vrt, csv, overwrite=overwrite), OutputPathError,
                           csv, vrt)
        assert "would destroy it" in message
    # a VRT naming a VRT naming a Shapefile: the Shapefile's .dbf is read too
    _polygons(tmp_path / "data" / "roads.shp")
    outer = tmp_path / "outer.vrt"
    outer.write_text('<OGRVRTDataSource><OGRVRTLayer name="roads">'
                     f'<SrcDataSource>{tmp_path / "data" / "roads.shp"}</SrcDataSource>'
                     '</OGRVRTLayer></OGRVRTDataSource>')
    dbf = tmp_path / "data" / "roads.dbf"
    _refused(lambda: check_training_paths(scene, outer, dbf), OutputPathError, dbf, outer)
    assert fingerprint(csv) == before and partial_files(tmp_path) == []


def test_every_layer_of_a_shapefile_folder_is_protected(tmp_path: Path) -> None:
    """Item 4: labels given as a folder (OGR opens it as one data set): every member of every layer."""
    import pyogrio

    scene = write_scene(tmp_path / "scene.tif")
    folder = tmp_path / "shapes"
    folder.mkdir()
    _polygons(folder / "fields.shp")
    _polygons(folder / "roads.shp")
    assert sorted(pyogrio.list_layers(folder)[:, 0]) == ["fields", "roads"]  # OGR opens the folder
    members = sorted(folder.iterdir())
    assert {p.suffix for p in members} >= {".shp", ".shx", ".dbf", ".prj"}
    before = {p: fingerprint(p) for p in members}
    for member in members:
        for overwrite in (True, False):
            _refused(partial(check_training_paths, scene, folder, member, overwrite=overwrite), OutputPathError,
                     member, folder)
    _refused(lambda: check_training_paths(scene, folder, folder), OutputPathError, folder)  # the folder itself
    assert {p: fingerprint(p) for p in sorted(folder.iterdir())} == before
    check_training_paths(scene, folder, folder / "model.pt")  # a new file that is no layer member is fine


@needs_fifo
def test_output_that_is_not_a_regular_file_is_refused(tmp_path: Path) -> None:
    """Item 5: a device, a FIFO, a socket or a folder is never written into or replaced."""
    fifo = tmp_path / "pipe.tif"
    os.mkfifo(fifo)
    targets: list[Path] = [fifo, Path(os.devnull), tmp_path]
    sock_path = tmp_path / "s.tif"
    sock = None
    if len(os.fsencode(sock_path)) < 100:
        sock = socket.socket(socket.AF_UNIX)
        sock.bind(os.fspath(sock_path))
        targets.append(sock_path)
    try:
        for target in targets:
            for overwrite in (True, False):
                message = _refused(partial(check_outputs, [("output", target)], [], overwrite=overwrite),
                                   OutputPathError, target)
                assert "is not a regular file" in message
        assert stat.S_ISFIFO(os.stat(fifo).st_mode) and stat.S_ISCHR(os.stat(os.devnull).st_mode)
    finally:
        if sock is not None:
            sock.close()


def test_atomic_path_never_replaces_a_file_another_run_created(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Item 6: a new output that another run creates meanwhile is kept; an existing one is replaced."""
    target = tmp_path / "map.tif"

    def race() -> str:
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"this run")
            target.write_bytes(b"the other run")  # the other run finishes first
        return "no error"

    message = _refused(race, OutputPathError, target)
    assert "appeared while this run was writing it" in message and "nothing was replaced" in message
    assert target.read_bytes() == b"the other run" and partial_files(tmp_path) == []
    with atomic_path(target) as tmp:  # existed as the block began: replacing it is intended
        tmp.write_bytes(b"replaced")
    assert target.read_bytes() == b"replaced"
    new = tmp_path / "new.tif"
    with pytest.raises(KeyboardInterrupt), atomic_path(new) as tmp:
        tmp.write_bytes(b"half")
        raise KeyboardInterrupt
    assert not new.exists() and partial_files(tmp_path) == []
    with atomic_path(new) as tmp:
        tmp.write_bytes(b"new")
    assert new.read_bytes() == b"new" and partial_files(tmp_path) == []

    def no_hard_links(src: Any, dst: Any, **kwargs: Any) -> None:
        raise PermissionError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_hard_links)  # FAT, some network shares: the fallback
    other = tmp_path / "other.tif"
    with atomic_path(other) as tmp:
        tmp.write_bytes(b"fallback")
    assert other.read_bytes() == b"fallback" and partial_files(tmp_path) == []
    third = tmp_path / "third.tif"

    def race_without_links() -> None:
        with atomic_path(third) as tmp:
            tmp.write_bytes(b"this run")
            third.write_bytes(b"the other run")

    _refused(race_without_links, OutputPathError, third)
    assert third.read_bytes() == b"the other run" and partial_files(tmp_path) == []


@needs_fifo
def test_input_that_is_not_a_regular_file_is_refused(tmp_path: Path) -> None:
    """Item 7: GDAL would block forever opening a FIFO: refused before anything opens it."""
    scene = write_scene(tmp_path / "scene.tif")
    fifo = tmp_path / "scene_pipe.tif"
    os.mkfifo(fifo)
    for call, names in [
        (lambda: reads_of([("input raster", fifo)]), ("input raster", fifo)),
        (lambda: reads_of(files=[("model file", fifo)]), ("model file", fifo)),
        (lambda: check_input_file(fifo, "the input raster"), ("input raster", fifo)),
        (lambda: check_training_paths(fifo, scene, tmp_path / "m.pt"), ("raster", fifo)),
        (lambda: check_training_paths(scene, fifo, tmp_path / "m.pt"), ("label file", fifo)),
        (lambda: check_training_paths(scene, scene, tmp_path / "m.pt", os.devnull), ("weights file", os.devnull)),
    ]:
        message = _refused(call, CarlGeoError, *names)
        assert "is not a regular file" in message and "give a file" in message
    # /vsi paths are not local paths; the archive of a /vsizip/ path still is, and is never opened
    check_input_file("/vsimem/x.tif", "the input raster")
    zip_fifo = tmp_path / "pipe.zip"
    os.mkfifo(zip_fifo)
    src = f"/vsizip/{zip_fifo}/scene.tif"
    _refused(lambda: reads_of([("input raster", src)]), CarlGeoError, zip_fifo, src)
    # a folder is a fine input (OGR opens folders of Shapefiles)
    reads_of(files=[("label file", tmp_path)])
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)  # untouched
