"""Each shipped config runs as shipped on the sample data (``--trainer.fast_dev_run=true``), or
says in one line which folder it needs and in which layout ("Also" paragraph of issue #20)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from user_files import run_cli

ROOT = Path(__file__).resolve().parents[1]
#: config -> (command, None if it runs on the sample data, else what its one error line must say)
CONFIGS = {
    "segmentation_polygons.yaml": ("fit", None),
    "ssl_tiny_cpu.yaml": ("pretrain", None),
    "classification_chips.yaml": ("fit", "no 'train' folder in data/chips: chip sources must be laid out as "
                                         "data/chips/{train,val,test}/<class>/*.tif"),
    "mixed_sensors.yaml": ("fit", "no 'train' folder in data/chips_sentinel2: chip sources must be laid out as "
                                  "data/chips_sentinel2/{train,val,test}/<class>/*.tif"),
    # upstream's recipe starts from timm's EVA-02 / DINOv2 weights: offline (CARL_GEO_OFFLINE=1 in the tests)
    # it stops at once with one line saying where to get them
    "ssl_upstream.yaml": ("pretrain", "cannot fetch the timm weights"),
    "ssl_published.yaml": ("pretrain", "data/sentinel2 does not exist; data.init_args.sources[].paths must name "
                                       "GeoTIFF files, or folders holding them"),
}


def test_every_shipped_config_is_listed() -> None:
    assert {p.name for p in (ROOT / "configs").glob("*.yaml")} == set(CONFIGS)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_config_runs_or_names_the_missing_folder(name: str, tmp_path: Path, monkeypatch, capsys) -> None:
    # run where the configs' relative paths resolve (carl_geo/sample_data/...), writing into tmp_path
    (tmp_path / "carl_geo").symlink_to(ROOT / "carl_geo")
    monkeypatch.chdir(tmp_path)
    command, says = CONFIGS[name]
    argv = [command, "--config", ROOT / "configs" / name, "--trainer.fast_dev_run=true",
            "--trainer.enable_progress_bar=false"]
    if name == "ssl_published.yaml":
        argv += ["--trainer.accelerator=cpu", "--trainer.precision=32-true"]  # the GPU is not what is missing
    code, err, _ = run_cli(argv, capsys)
    errors = [line for line in err if ": error: " in line]
    if says is None:
        assert code == 0 and errors == [], err
    else:
        assert code == 2 and len(errors) == 1 and says in errors[0], err
        assert errors[0] == err[-1] and not any("Error:" in line and "carl_geo" in line for line in err), err
    assert not os.path.exists(ROOT / "runs")
