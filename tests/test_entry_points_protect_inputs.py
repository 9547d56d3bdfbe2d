"""Every entry point that writes files refuses to write over a file it reads (issue #20, items 1-3).

:data:`CASES` lists, per ``carl-geo`` sub-command, runs whose output is one of the run's own input
files: the input raster (also reached through a symlink), a file a VRT input reads, the model /
weights / checkpoint, the label file, the config file. Each run must exit with status 2 and one
line on stderr, and leave every input byte for byte as it was. A sub-command without a case fails
:func:`test_every_subcommand_has_a_case`, so a new command that writes files cannot skip this.
The QGIS algorithms have the same test in ``tests/qgis/test_protect_inputs.py``.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import pytest
import rasterio.shutil

from carl_geo.cli import LIGHTNING_SUBCOMMANDS, build_parser
from user_files import WAVELENGTHS, fingerprint, partial_files, run_cli, save_model, write_scene

ROOT = Path(__file__).resolve().parents[1]
WL = ",".join(map(str, WAVELENGTHS))
FAST = ["--tile-size", "32", "--overlap", "8", "--device", "cpu", "--quiet"]


@dataclass
class Case:
    """argv of a run and the files it reads that must survive it."""

    argv: list[str]
    protected: list[Path]
    env: dict[str, str] | None = None


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("inputs")
    scene = write_scene(folder / "scene.tif")
    vrt = folder / "scene.vrt"
    rasterio.shutil.copy(scene, vrt, driver="VRT")
    link = folder / "link.tif"
    link.symlink_to(scene)
    from carl_geo.sample_data import nc_landsat7, write_crop

    crop = write_crop(nc_landsat7(), folder / "crop", 112, 128, 64)
    return {"scene": scene, "vrt": vrt, "link": link, "model": save_model(folder / "model.pt"),
            "raster": crop.image, "labels": crop.polygons}


def _predict(f: dict[str, Path], tmp: Path) -> list[Case]:
    out = tmp / "map.tif"
    return [
        Case(["predict", f["scene"], f["link"], "-m", f["model"], *FAST], [f["scene"]]),  # output = input via link
        Case(["predict", f["link"], f["scene"], "-m", f["model"], *FAST], [f["scene"]]),  # input via link
        Case(["predict", f["vrt"], f["scene"], "-m", f["model"], "--wavelengths", WL, *FAST], [f["scene"]]),
        Case(["predict", f["scene"], f["model"], "-m", f["model"], *FAST], [f["model"]]),
        Case(["predict", f["scene"], out, "-m", f["model"], *FAST, "--quicklook", f["scene"]], [f["scene"]]),
        Case(["predict", f["scene"], out, "-m", f["model"], *FAST, "--quicklook", f["model"]], [f["model"]]),
    ]


def _train(f: dict[str, Path], tmp: Path) -> list[Case]:
    base = ["train", "--raster", f["raster"], "--labels", f["labels"], "--label-field", "label", "--epochs", "1",
            "--device", "cpu"]
    link = tmp / "model_link.pt"
    link.symlink_to(f["raster"])
    return [
        Case([*base, "--out", f["raster"]], [f["raster"]]),
        Case([*base, "--out", f["labels"]], [f["labels"]]),
        Case([*base, "--out", link], [f["raster"]]),
        Case([*base, "--out", f["model"], "--weights", f["model"]], [f["model"]]),
    ]


def _demo(f: dict[str, Path], tmp: Path) -> list[Case]:
    from carl_geo.sample_data import nc_landsat7

    out = tmp / "demo"
    out.mkdir()
    (out / "carl_landcover.tif").symlink_to(nc_landsat7().image)  # the shipped scene, through a link
    return [Case(["demo", "--out", out, "--overwrite"], [nc_landsat7().image])]


def _export(f: dict[str, Path], tmp: Path) -> list[Case]:
    link = tmp / "backbone.safetensors"
    link.symlink_to(f["model"])
    return [Case(["export", f["model"], f["model"], "--overwrite"], [f["model"]]),
            Case(["export", f["model"], link, "--overwrite"], [f["model"]])]


def _geobench(f: dict[str, Path], tmp: Path) -> list[Case]:
    out = tmp / "results"
    out.mkdir()
    ckpt = shutil.copy(f["model"], out / "results.json")  # a checkpoint kept where a result file goes
    return [Case(["geobench", "--root", tmp, "--checkpoint", ckpt, "--out", out, "--config", "tiny"], [Path(ckpt)])]


def _weights(f: dict[str, Path], tmp: Path) -> list[Case]:
    """CARL_GEO_WEIGHTS naming a user's file that is not the weights: a download must not replace it."""
    return [Case(["weights", "download"], [f["scene"]], env={"CARL_GEO_WEIGHTS": str(f["scene"]),
                                                            "CARL_GEO_HOME": str(tmp / "cache")})]


def _lightning(command: str, config: str) -> Callable[[dict[str, Path], Path], list[Case]]:
    """The run's configuration would be saved as config.yaml in its log folder: with
    ``trainer.logger: false`` that is ``default_root_dir``, here the folder of the --config file."""

    def cases(f: dict[str, Path], tmp: Path) -> list[Case]:
        run = tmp / "run"
        run.mkdir()
        cfg = Path(shutil.copy(ROOT / "configs" / config, run / "config.yaml"))
        argv = [command, "--config", cfg, "--trainer.default_root_dir", run, "--trainer.logger", "false",
                "--trainer.max_steps", "1", "--trainer.accelerator", "cpu", "--trainer.enable_progress_bar", "false"]
        if command != "pretrain":
            argv += ["--data.init_args.samples_per_epoch", "8", "--data.init_args.num_workers", "0"]
        return [Case(argv, [cfg])]

    return cases


#: sub-command -> runs that would write over one of their inputs
CASES: dict[str, Callable[[dict[str, Path], Path], list[Case]]] = {
    "predict": _predict,
    "train": _train,
    "demo": _demo,
    "export": _export,
    "geobench": _geobench,
    "weights": _weights,
    **{c: _lightning(c, "segmentation_polygons.yaml") for c in LIGHTNING_SUBCOMMANDS if c != "predict"},
    "predict --config": _lightning("predict", "segmentation_polygons.yaml"),
    "pretrain": _lightning("pretrain", "ssl_tiny_cpu.yaml"),
}
LIGHTNING = {*LIGHTNING_SUBCOMMANDS, "predict --config", "pretrain"}


def test_every_subcommand_has_a_case() -> None:
    commands = set(build_parser()._subparsers._group_actions[0].choices)  # noqa: SLF001 (argparse's own table)
    commands |= set(LIGHTNING_SUBCOMMANDS) | {"pretrain", "predict --config"}
    assert commands - set(CASES) == set(), "a sub-command that writes files needs a case in CASES"


@pytest.mark.parametrize("command", sorted(set(CASES) - LIGHTNING))
def test_refuses_to_write_over_its_inputs(command: str, files: dict[str, Path], tmp_path: Path, capsys) -> None:
    _check(CASES[command](files, tmp_path), tmp_path, capsys)


@pytest.mark.slow
@pytest.mark.parametrize("command", sorted(LIGHTNING - {"predict"}))
def test_lightning_run_refuses_to_save_its_config_over_the_config_file(command: str, files: dict[str, Path],
                                                                       tmp_path: Path, capsys) -> None:
    _check(CASES[command](files, tmp_path), tmp_path, capsys)


def _check(cases: list[Case], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for case in cases:
        before = {p: fingerprint(p) for p in case.protected}
        with mock.patch.dict(os.environ, case.env or {}):
            code, err, _ = run_cli(case.argv, capsys)
        assert code == 2, (case.argv, err)
        errors = [line for line in err if ": error: " in line]
        assert len(errors) == 1 and ("would destroy it" in errors[0] or "would replace" in errors[0]) \
            or "are the same file" in errors[0], (case.argv, err)
        assert {p: fingerprint(p) for p in case.protected} == before, case.argv
        assert partial_files(tmp_path) == []


def test_quicklook_and_output_may_not_be_the_same_file(files: dict[str, Path], tmp_path: Path, capsys) -> None:
    out = tmp_path / "map.tif"
    code, err, _ = run_cli(["predict", files["scene"], out, "-m", files["model"], *FAST, "--quicklook", out], capsys)
    assert code == 2 and len(err) == 1 and "are the same file" in err[0]
    assert not out.exists()
