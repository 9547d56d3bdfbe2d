"""One place for each kind of code and each choice (issue #19): every LightningModule in trainers/, every
DataModule in datamodules/, every sampler in samplers/; moved modules keep their old names; every choice
list is built from its registry."""

from __future__ import annotations

import importlib
import inspect
import pickle
import pkgutil
import warnings

import lightning as L
import pytest
from torch.utils.data import Sampler

import carl_geo
from helpers import ROOT
from user_files import run_cli

#: modules that need optional packages this test does not need to import
OPTIONAL = {"carl_geo.inference.int8", "carl_geo.training"}


def _modules() -> list[str]:
    names = []
    for info in pkgutil.walk_packages(carl_geo.__path__, "carl_geo."):
        if info.name in OPTIONAL or info.name.startswith("carl_geo.training."):
            continue
        names.append(info.name)
    return names


def _classes_defined_in_carl_geo() -> list[type]:
    found = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the old module names are aliases
        for name in _modules():
            module = importlib.import_module(name)
            found += [c for _, c in inspect.getmembers(module, inspect.isclass) if c.__module__ == module.__name__]
    return found


def test_every_lightning_module_datamodule_and_sampler_lives_in_its_kinds_folder() -> None:
    classes = _classes_defined_in_carl_geo()
    homes = {L.LightningModule: "carl_geo.trainers.", L.LightningDataModule: "carl_geo.datamodules.",
             Sampler: "carl_geo.samplers."}
    counts = dict.fromkeys(homes, 0)
    for cls in classes:
        for kind, home in homes.items():
            if issubclass(cls, kind):
                counts[kind] += 1
                assert cls.__module__.startswith(home), f"{cls.__module__}.{cls.__name__} belongs in {home}"
    # the tasks, data modules and samplers of segmentation, classification, CARL-SSL and GEO-Bench
    assert counts[L.LightningModule] >= 6 and counts[L.LightningDataModule] >= 5 and counts[Sampler] >= 3, counts


def test_moved_modules_keep_their_old_names_as_the_same_module() -> None:
    import carl_geo.datamodules.carl_ssl as ssl_data
    import carl_geo.polygon_training.polygons as polygons
    import carl_geo.trainers.carl_ssl as ssl_task
    import carl_geo.trainers.geobench as geobench_tasks

    with pytest.warns(DeprecationWarning, match="carl_geo.polygon_training"):
        importlib.reload(importlib.import_module("carl_geo.training"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from carl_geo.training import train_from_polygons
        from carl_geo.training.polygons import TrainingResult
        import carl_geo.ssl.data
        import carl_geo.ssl.module
        import carl_geo.evaluation.geobench.tasks

        old_polygons = importlib.import_module("carl_geo.training.polygons")
        old_recipe = importlib.import_module("carl_geo.training.recipe")
    assert old_polygons is polygons and old_recipe is importlib.import_module("carl_geo.polygon_training.recipe")
    assert train_from_polygons is polygons.train_from_polygons and TrainingResult is polygons.TrainingResult
    assert polygons.__spec__.name == "carl_geo.polygon_training.polygons"  # the alias left the module's own spec
    assert carl_geo.ssl.module is ssl_task and carl_geo.ssl.data is ssl_data
    assert carl_geo.evaluation.geobench.tasks is geobench_tasks
    # pickles that name the old path load the same class
    old_pickle = pickle.dumps(polygons.TrainingResult, protocol=0).replace(b"carl_geo.polygon_training.polygons",
                                                               b"carl_geo.training.polygons")
    assert b"carl_geo.training.polygons" in old_pickle and pickle.loads(old_pickle) is polygons.TrainingResult
    # the packages re-export the moved classes under their old names
    from carl_geo.evaluation.geobench import GeoBenchDataModule, GeoBenchSegmentationTask
    from carl_geo.ssl import CARLPretrainTask, RasterSSLDataModule

    assert CARLPretrainTask is carl_geo.trainers.CARLPretrainTask
    assert RasterSSLDataModule is carl_geo.datamodules.RasterSSLDataModule
    assert GeoBenchSegmentationTask is carl_geo.trainers.GeoBenchSegmentationTask
    assert GeoBenchDataModule is carl_geo.datamodules.GeoBenchDataModule


def test_shipped_ssl_configs_use_the_new_class_paths_and_the_old_ones_still_load(tmp_path, capsys) -> None:
    for name in ("ssl_tiny_cpu.yaml", "ssl_published.yaml", "ssl_upstream.yaml"):
        text = (ROOT / "configs" / name).read_text()
        assert "class_path: carl_geo.trainers.CARLPretrainTask" in text
        assert "class_path: carl_geo.datamodules.RasterSSLDataModule" in text
    old = (ROOT / "configs" / "ssl_tiny_cpu.yaml").read_text()
    old = old.replace("carl_geo.trainers.CARLPretrainTask", "carl_geo.ssl.CARLPretrainTask")
    old = old.replace("carl_geo.datamodules.RasterSSLDataModule", "carl_geo.ssl.RasterSSLDataModule")
    (tmp_path / "old.yaml").write_text(old)
    code, err, out = run_cli(["pretrain", "--config", tmp_path / "old.yaml", "--print_config"], capsys)
    assert code == 0, err  # both old names resolved to their classes (the init arguments are filled in)
    assert "class_path: carl_geo.ssl.CARLPretrainTask" in out and "lr_schedule: " in out
    assert "class_path: carl_geo.ssl.RasterSSLDataModule" in out and "chips_per_epoch: " in out


def test_every_choice_list_is_its_registry() -> None:
    from carl_geo.evaluation.geobench.options import MODES as GEOBENCH_MODES
    from carl_geo.inference import runner, settings
    from carl_geo.models.config import CONFIGS
    from carl_geo.models.names import CONFIG_NAMES, HEAD_NAMES, MODE_NAMES
    from carl_geo.models.segmentation import HEADS
    from carl_geo.trainers.base import MODES

    assert CONFIG_NAMES == tuple(CONFIGS) and set(HEAD_NAMES) == set(HEADS) and MODE_NAMES == MODES
    assert GEOBENCH_MODES == (*MODE_NAMES, "knn")
    assert runner.OUTPUTS == settings.OUTPUTS == ("classes", "probabilities", "embeddings")
    assert tuple(runner.PRECISIONS) == settings.PRECISIONS


@pytest.mark.parametrize("command", ["train", "geobench"])
def test_command_line_choices_come_from_the_registries(command: str) -> None:
    import argparse

    from carl_geo.cli import build_parser
    from carl_geo.models.names import CONFIG_NAMES, HEAD_NAMES

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)).choices[command]
    choices = {a.dest: tuple(a.choices) for a in sub._actions if a.choices}
    assert choices["config"] == CONFIG_NAMES and choices["head"] == HEAD_NAMES


def test_lightning_cli_rejects_a_bad_config_name_when_parsing(capsys) -> None:
    """``config`` / ``mode`` / ``head`` are Literal arguments: jsonargparse refuses a bad value before
    any model is built."""
    argv = ["fit", "--config", ROOT / "configs" / "segmentation_polygons.yaml", "--model.init_args.config=huge",
            "--print_config"]
    code, err, _ = run_cli(argv, capsys)
    assert code == 2 and any("huge" in line for line in err), err
    ok = run_cli(argv[:3] + ["--model.init_args.config=tiny_polygons", "--print_config"], capsys)
    assert ok[0] == 0 and "config: tiny_polygons" in ok[2], ok[1]


def test_builders_pass_keyword_arguments_on_and_the_polygon_variant_is_a_named_config() -> None:
    from carl_geo.models.config import SCRATCH_SPATIAL_KWARGS, get_config, scratch_variant, tiny_config
    from carl_geo.models.registry import carl_tiny
    from carl_geo.polygon_training.polygons import _build_model
    from carl_geo.polygon_training.recipe import TrainingRecipe

    with pytest.raises(TypeError, match="not_a_carl_argument"):
        carl_tiny(not_a_carl_argument=1)  # reaches CARL.__init__, as timm's and torchgeo's builders do
    assert isinstance(carl_tiny(spectral_init=None), carl_geo.CARL)
    cfg = get_config("tiny_polygons")
    assert cfg.patch_size == 4 and all(cfg.spatial.model_kwargs[k] is v for k, v in SCRATCH_SPATIAL_KWARGS.items())
    assert cfg == scratch_variant(tiny_config(), 4)
    model, frozen = _build_model(3, TrainingRecipe(config="tiny", head="progressive", patch_size=4), None)
    assert not frozen and model.backbone.config == cfg  # what polygon training builds
    assert tiny_config().patch_size == 8 and "use_abs_pos_emb" not in tiny_config().spatial.model_kwargs
