"""GEO-Bench reader: the published on-disk format (files written by the real ``geobench`` 1.1.0
package), the synthetic benchmark, band selection, normalisation, partitions and clear errors."""

from __future__ import annotations

import json
import pickle

import h5py
import numpy as np
import pytest
import torch

from carl_geo.evaluation.geobench import (
    GeoBenchDataset,
    GeoBenchFormatError,
    GeoBenchSettings,
    find_tasks,
    load_task,
    read_sample,
)
from carl_geo.datasets.geobench.dataset import corrected_wavelengths
from carl_geo.datasets.geobench.pickles import (
    UnsafePickleError,
    dump_geobench_pickle,
    load_geobench_pickle,
    make_record,
)
from carl_geo.evaluation.geobench.runner import preflight
from carl_geo.sensors import get_sensor

# Written by geobench 1.1.0 (PyPI) with affine 2.4 / rasterio 1.5: ``pickle.dumps(TaskSpecifications(
# dataset_name="m-x", bands_info=[sentinel2_13_bands[3], ElevationBand("Elevation", ...)],
# label_type=MultiLabelClassification(3, ["a", "b", "c"]), patch_size=(4, 4), ...), protocol=4)`` and
# the attribute dict that ``write_sample_hdf5`` pickles for a sample with those two bands (date
# 2020-05-17, np.float64 resolution, Affine transform, EPSG:4326 CRS) and label np.array([0, 1, 1]).
GEOBENCH_TASK_SPECS = (
    b'\x80\x04\x95\xd4\x01\x00\x00\x00\x00\x00\x00\x8c\rgeobench.task\x94\x8c\x12Tas'
    b'kSpecifications\x94\x93\x94)\x81\x94}\x94(\x8c\x0cdatase'
    b't_name\x94\x8c\x03m-x\x94\x8c\x0ebenchmark_name\x94\x8c\x11'
    b'segmentation_v1.0\x94\x8c\npatch_size\x94K'
    b'\x04K\x04\x86\x94\x8c\x0cn_time_steps\x94K\x01\x8c\nbands_in'
    b'fo\x94]\x94(\x8c\x10geobench.dataset\x94\x8c\tSenti'
    b'nel2\x94\x93\x94)\x81\x94}\x94(\x8c\x04name\x94\x8c\x0804 - Red\x94\x8c'
    b'\talt_names\x94\x8c\x014\x94\x8c\x0204\x94\x8c\x03red\x94\x87\x94\x8c\x12sp'
    b'atial_resolution\x94K\n\x8c\nwavelength\x94'
    b'G?\xe5G\xae\x14z\xe1Hubh\x0e\x8c\rElevationBand\x94\x93\x94)'
    b'\x81\x94}\x94(h\x13\x8c\tElevation\x94h\x15\x8c\televation'
    b'\x94\x85\x94h\x1aK\x1eube\x8c\nlabel_type\x94\x8c\x0egeobenc'
    b'h.label\x94\x8c\x18MultiLabelClassificati'
    b'on\x94\x93\x94)\x81\x94}\x94(\x8c\tn_classes\x94K\x03\x8c\nclass'
    b'_name\x94]\x94(\x8c\x01a\x94\x8c\x01b\x94\x8c\x01c\x94eubh\x1aK\nub.'
)
GEOBENCH_SAMPLE_ATTRS = (
    b'\x80\x04\x95u\x05\x00\x00\x00\x00\x00\x00}\x94(\x8c\x0804 - Red\x94}\x94(\x8c\x04da'
    b'te\x94\x8c\x08datetime\x94\x8c\x04date\x94\x93\x94C\x04\x07\xe4\x05\x11\x94\x85\x94'
    b'R\x94\x8c\x07date_id\x94N\x8c\x12spatial_resolutio'
    b'n\x94\x8c\x16numpy._core.multiarray\x94\x8c\x06sca'
    b'lar\x94\x93\x94\x8c\x05numpy\x94\x8c\x05dtype\x94\x93\x94\x8c\x02f8\x94\x89\x88\x87'
    b'\x94R\x94(K\x03\x8c\x01<\x94NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00t\x94bC\x08\x00\x00'
    b'\x00\x00\x00\x00$@\x94\x86\x94R\x94\x8c\tband_info\x94\x8c\x10geobenc'
    b'h.dataset\x94\x8c\tSentinel2\x94\x93\x94)\x81\x94}\x94(\x8c\x04'
    b'name\x94h\x01\x8c\talt_names\x94\x8c\x014\x94\x8c\x0204\x94\x8c\x03re'
    b'd\x94\x87\x94h\x0bK\n\x8c\nwavelength\x94G?\xe5G\xae\x14z\xe1Hub'
    b'\x8c\tmeta_info\x94N\x8c\ttransform\x94\x8c\x06affin'
    b'e\x94\x8c\x06Affine\x94\x93\x94(G@$\x00\x00\x00\x00\x00\x00G\x00\x00\x00\x00\x00\x00\x00\x00'
    b'G\x00\x00\x00\x00\x00\x00\x00\x00G\x00\x00\x00\x00\x00\x00\x00\x00G\xc0$\x00\x00\x00\x00\x00\x00G\x00\x00\x00\x00'
    b'\x00\x00\x00\x00t\x94\x81\x94\x8c\x03crs\x94\x8c\x0crasterio.crs\x94\x8c\x03C'
    b'RS\x94\x93\x94)\x81\x94X.\x01\x00\x00GEOGCS["WGS 84",DAT'
    b'UM["WGS_1984",SPHEROID["WGS 84",'
    b'6378137,298.257223563,AUTHORITY['
    b'"EPSG","7030"]],AUTHORITY["EPSG"'
    b',"6326"]],PRIMEM["Greenwich",0,A'
    b'UTHORITY["EPSG","8901"]],UNIT["d'
    b'egree",0.0174532925199433,AUTHOR'
    b'ITY["EPSG","9122"]],AXIS["Latitu'
    b'de",NORTH],AXIS["Longitude",EAST'
    b'],AUTHORITY["EPSG","4326"]]\x94bu\x8c\t'
    b'Elevation\x94}\x94(h\x03h\x06C\x04\x07\xe4\x05\x11\x94\x85\x94R\x94h\nNh'
    b'\x0bh\x0eh\x14C\x08\x00\x00\x00\x00\x00\x00$@\x94\x86\x94R\x94h\x1ah\x1b\x8c\rElevat'
    b'ionBand\x94\x93\x94)\x81\x94}\x94(h h4h!\x8c\televatio'
    b"n\x94\x85\x94h\x0bK\x1eubh'Nh(h+(G@$\x00\x00\x00\x00\x00\x00G\x00\x00\x00\x00"
    b'\x00\x00\x00\x00G\x00\x00\x00\x00\x00\x00\x00\x00G\x00\x00\x00\x00\x00\x00\x00\x00G\xc0$\x00\x00\x00\x00\x00\x00G'
    b'\x00\x00\x00\x00\x00\x00\x00\x00t\x94\x81\x94h.h1)\x81\x94X.\x01\x00\x00GEOGCS["'
    b'WGS 84",DATUM["WGS_1984",SPHEROI'
    b'D["WGS 84",6378137,298.257223563'
    b',AUTHORITY["EPSG","7030"]],AUTHO'
    b'RITY["EPSG","6326"]],PRIMEM["Gre'
    b'enwich",0,AUTHORITY["EPSG","8901'
    b'"]],UNIT["degree",0.017453292519'
    b'9433,AUTHORITY["EPSG","9122"]],A'
    b'XIS["Latitude",NORTH],AXIS["Long'
    b'itude",EAST],AUTHORITY["EPSG","4'
    b'326"]]\x94bu\x8c\x05label\x94h\x0c\x8c\x0c_reconstruc'
    b't\x94\x93\x94h\x0f\x8c\x07ndarray\x94\x93\x94K\x00\x85\x94C\x01b\x94\x87\x94R\x94(K'
    b'\x01K\x03\x85\x94h\x11\x8c\x02i8\x94\x89\x88\x87\x94R\x94(K\x03h\x15NNNJ\xff\xff\xff\xffJ'
    b'\xff\xff\xff\xffK\x00t\x94b\x89C\x18\x00\x00\x00\x00\x00\x00\x00\x00'
    b'\x01\x00\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00'
    b'\x00\x00\x00\x00\x94t\x94b\x8c\x0bbands_order\x94]\x94(h\x01h4eu.'
)


@pytest.fixture(scope="module")
def bench(make_geobench):
    return make_geobench(n_train=6, n_valid=3, n_test=3)


def test_reads_files_written_by_geobench(tmp_path):
    task_dir = tmp_path / "segmentation_v1.0" / "m-x"
    task_dir.mkdir(parents=True)
    (task_dir / "task_specs.pkl").write_bytes(GEOBENCH_TASK_SPECS)
    (task_dir / "default_partition.json").write_text(json.dumps({"train": ["s0"], "valid": ["s0"], "test": ["s0"]}))
    red = np.arange(16, dtype=np.int16).reshape(4, 4) * 100 + 7
    with h5py.File(task_dir / "s0.hdf5", "w") as fp:  # as geobench.dataset.write_sample_hdf5 does
        fp.create_dataset("04 - Red", data=red)
        fp.create_dataset("Elevation", data=np.full((4, 4), 1500, dtype=np.int16))
        fp.attrs["pickle"] = str(GEOBENCH_SAMPLE_ATTRS)

    task = load_task(task_dir)
    assert (task.name, task.kind, task.num_classes, task.class_names) == ("m-x", "multilabel", 3, ["a", "b", "c"])
    assert [(b.name, b.kind, b.wavelength) for b in task.bands] == [
        ("04 - Red", "Sentinel2", 0.665), ("Elevation", "ElevationBand", None)]
    assert task.patch_size == (4, 4)

    sample = read_sample(task_dir / "s0.hdf5")
    assert [(b.name, b.wavelength) for b in sample.bands] == [("04 - Red", 0.665), ("Elevation", None)]
    np.testing.assert_array_equal(sample.bands[0].data, red)
    assert str(sample.bands[0].date) == "2020-05-17"
    np.testing.assert_array_equal(sample.label, [0, 1, 1])

    item = GeoBenchDataset(task, "train")[0]
    assert item["image"].shape == (1, 4, 4)  # elevation (no wavelength) dropped, as upstream
    assert item["wavelengths"].tolist() == pytest.approx([0.665])
    assert item["label"].tolist() == [0, 1, 1]
    red_f = torch.from_numpy(red.astype(np.float32))
    torch.testing.assert_close(item["image"][0], (red_f - red_f.mean()) / (red_f.std() + 1e-6))


def test_synthetic_benchmark_layout_and_items(bench):
    tasks = {n: load_task(p) for n, p in find_tasks(bench).items()}
    assert {n: t.kind for n, t in tasks.items()} == {
        "m-synth-cls": "classification", "m-synth-multilabel": "multilabel", "m-synth-seg": "segmentation"}
    assert find_tasks(bench)["m-synth-seg"].parent.name == "segmentation_v1.0"
    s2 = get_sensor("sentinel2_l1c")
    expected_wl = [s2.wavelengths[s2.band_index(b)] for b in ("B02", "B03", "B04", "B08", "B11", "B12")]
    for name, task in tasks.items():
        assert [b.name for b in task.bands][-1] == "Elevation" and task.bands[-1].wavelength is None
        assert [b.wavelength for b in task.spectral_bands] == pytest.approx(expected_wl)
        ds = GeoBenchDataset(task, "test")
        assert len(ds) == 3
        item = ds[1]
        assert item["image"].shape == (6, 16, 16) and item["image"].dtype == torch.float32
        assert item["wavelengths"].tolist() == pytest.approx(expected_wl)
        assert float(item["image"].mean()) == pytest.approx(0.0, abs=1e-4)
        assert float(item["image"].std()) == pytest.approx(1.0, abs=1e-3)
        if task.kind == "segmentation":
            assert item["mask"].shape == (16, 16) and item["mask"].dtype == torch.int64
            assert 0 <= int(item["mask"].min()) and int(item["mask"].max()) < 3
        elif task.kind == "multilabel":
            assert item["label"].shape == (4,) and set(item["label"].tolist()) <= {0, 1}
            assert int(item["label"].sum()) >= 1
        else:
            assert item["label"].shape == () and 0 <= int(item["label"]) < 3


def test_band_normalization_uses_geobench_statistics(bench):
    task = load_task(find_tasks(bench)["m-synth-cls"])
    stats = json.loads((task.directory / "band_stats.json").read_text())
    ds = GeoBenchDataset(task, "valid", normalization="band")
    raw = read_sample(task.sample_path(ds.sample_names[0]))
    item = ds[0]
    for c, band in enumerate(raw.bands[:6]):
        expected = (band.data.astype(np.float32) - stats[band.name]["mean"]) / (stats[band.name]["std"] + 1e-6)
        np.testing.assert_allclose(item["image"][c].numpy(), expected, rtol=1e-5, atol=1e-5)
    assert "Elevation" in stats  # the statistics cover the dropped band too, as GEO-Bench's do


def test_partitions(bench):
    task = load_task(find_tasks(bench)["m-synth-cls"])
    assert sorted(task.partitions) == ["0.50x_train", "default"]
    for alias in ("0.50x_train", "0.50x", "0.5"):
        assert task.resolve_partition(alias) == "0.50x_train"
    half, full = task.partition("0.50x"), task.partition("default")
    assert len(half["train"]) == 3 and half["train"] == full["train"][:3]
    assert half["test"] == full["test"]
    with pytest.raises(ValueError, match=r"no partition '0.01x'.*0.50x_train, default"):
        task.resolve_partition("0.01x")
    assert len(GeoBenchDataset(task, "train", partition="0.5")) == 3


def test_corrupt_sample_error_names_the_file(bench, tmp_path):
    task = load_task(find_tasks(bench)["m-synth-multilabel"])
    bad = tmp_path / "bad.hdf5"
    bad.write_bytes(b"this is not an HDF5 file" * 10)
    with pytest.raises(GeoBenchFormatError, match="bad.hdf5"):
        read_sample(bad)
    with pytest.raises(FileNotFoundError, match="nope.hdf5"):
        read_sample(tmp_path / "nope.hdf5")
    # a sample whose metadata pickle names a foreign class is refused, not executed
    good = task.sample_path(task.partition()["test"][0])
    evil = tmp_path / "evil.hdf5"
    evil.write_bytes(good.read_bytes())
    with h5py.File(evil, "r+") as fp:
        fp.attrs["pickle"] = str(pickle.dumps({"bands_order": [], "label": print}))
    with pytest.raises(GeoBenchFormatError, match=r"evil\.hdf5.*builtins\.print"):
        read_sample(evil)


def test_label_out_of_range_names_the_file(bench, tmp_path):
    task = load_task(find_tasks(bench)["m-synth-cls"])
    path = task.sample_path(task.partition()["valid"][0])
    backup = path.read_bytes()
    try:
        with h5py.File(path, "r+") as fp:
            meta = load_geobench_pickle(fp.attrs["pickle"])
            meta["label"] = 7
            fp.attrs["pickle"] = str(dump_geobench_pickle(meta))
        with pytest.raises(GeoBenchFormatError, match=rf"{path.name}.*\[0, 2\]"):
            GeoBenchDataset(task, "valid")[0]
    finally:
        path.write_bytes(backup)


def test_unsafe_pickles_are_refused():
    with pytest.raises(UnsafePickleError, match="os.system"):
        load_geobench_pickle(b"\x80\x04\x95\x14\x00\x00\x00\x00\x00\x00\x00"
                             b"\x8c\x02os\x8c\x06system\x93\x8c\x02id\x85R.")
    with pytest.raises(UnsafePickleError, match="object dtypes"):
        load_geobench_pickle(pickle.dumps(np.array([{"a": 1}], dtype=object)))
    # plain numpy arrays and GEO-Bench records round-trip
    rec = make_record("geobench.dataset", "Sentinel2", name="B04", wavelength=0.665, alt_names=("4",))
    back = load_geobench_pickle(str(dump_geobench_pickle({"x": rec, "y": np.arange(3, dtype=np.int16)})))
    assert back["x"].kind == "Sentinel2" and back["x"].wavelength == 0.665 and back["x"].alt_names == ("4",)
    np.testing.assert_array_equal(back["y"], [0, 1, 2])


def test_missing_sample_file_is_found_before_training(bench, tmp_path):
    task = load_task(find_tasks(bench)["m-synth-seg"])
    path = task.sample_path(task.partition()["test"][-1])
    moved = tmp_path / path.name
    path.rename(moved)
    try:
        settings = GeoBenchSettings(root=bench, checkpoint="random", out=tmp_path / "out", config="tiny")
        with pytest.raises(FileNotFoundError, match=path.name):
            preflight(task, settings)
    finally:
        moved.rename(path)


def test_band_order_correction_for_known_bad_tasks():
    s2 = get_sensor("sentinel2_l1c")
    eurosat = corrected_wavelengths("m-eurosat", 13)
    assert eurosat[8] == s2.wavelengths[s2.band_index("B09")] and eurosat[12] == s2.wavelengths[s2.band_index("B8A")]
    kiln = corrected_wavelengths("m-brick-kiln", 13)
    assert kiln[5] == s2.wavelengths[s2.band_index("B07")] and kiln[10:] == [0.665, 0.56, 0.49]
    assert corrected_wavelengths("m-bigearthnet", 12) is None and corrected_wavelengths("m-eurosat", 12) is None
