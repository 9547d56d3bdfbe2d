"""One place for each kind of code and each choice (issue #19): every LightningModule in trainers/, every
DataModule in datamodules/, every sampler in samplers/; moved modules keep their old names; every choice
list is built from its registry."""

from __future__ import annotations

import ast
import importlib
import inspect
import pickle
import pkgutil
import sys
import warnings
from pathlib import Path

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
    from carl_geo.inference.outputs import OUTPUT_KINDS
    from carl_geo.models.config import CONFIGS
    from carl_geo.models.names import CONFIG_NAMES, HEAD_NAMES, MODE_NAMES
    from carl_geo.models.segmentation import HEADS
    from carl_geo.trainers.base import MODES

    assert CONFIG_NAMES == tuple(CONFIGS) and set(HEAD_NAMES) == set(HEADS) and MODE_NAMES == MODES
    assert GEOBENCH_MODES == (*MODE_NAMES, "knn")
    assert tuple(OUTPUT_KINDS) == settings.OUTPUTS == ("classes", "probabilities", "embeddings")
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


# --- Layers that point one way (issue #29) -------------------------------------------------------------------------

#: carl_geo's layers, lowest first: a module may import its own layer and those below, never one above. A module
#: belongs to the layer of the longest prefix (package or module name) that matches it, so the command-line
#: modules inside packages (``carl_geo.inference.cli``, ...) sit in the top layer with ``carl_geo.cli``.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("shared", (
        "carl_geo.errors", "carl_geo.validation", "carl_geo.transforms", "carl_geo.devices", "carl_geo.sensors",
        "carl_geo.class_colors",
        "carl_geo.io", "carl_geo._lazy",
        # the published checkpoint store (models fetch their weights from it) and the shipped scenes
        "carl_geo.weights", "carl_geo.sample_data",
        # helpers of the command line that import only this layer (models show a ProgressBar while downloading)
        "carl_geo.settings_options", "carl_geo.cli_args", "carl_geo.cli_runtime", "carl_geo.progress_bar",
    )),
    ("datasets", ("carl_geo.datasets",)),
    ("samplers", ("carl_geo.samplers",)),
    ("datamodules", ("carl_geo.datamodules",)),
    ("models", ("carl_geo.models", "carl_geo._torchgeo_hook")),
    ("ssl", ("carl_geo.ssl",)),
    ("trainers", ("carl_geo.trainers",)),
    ("polygon_training/inference", ("carl_geo.polygon_training", "carl_geo.training", "carl_geo.inference")),
    ("evaluation", ("carl_geo.evaluation",)),
    ("cli", (
        "carl_geo.cli", "carl_geo.lightning_cli", "carl_geo.lightning_outputs", "carl_geo.ssl_cli", "carl_geo.demo",
        "carl_geo.worker", "carl_geo.inference.cli", "carl_geo.polygon_training.cli", "carl_geo.weights.cli",
        "carl_geo.evaluation.geobench.cli",
    )),
)

#: Known upward imports, (module, imported module) -> why it is still there. Each needs a change in a module
#: this issue did not touch; the test fails on any upward import not listed here (and on an entry that is gone).
ALLOWED: dict[tuple[str, str], str] = {}


def _source_modules() -> dict[str, Path]:
    """Module name -> file of every module under carl_geo/ (read as text: nothing is imported)."""
    root = ROOT / "carl_geo"
    found = {}
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _is_deprecated_alias(tree: ast.Module) -> bool:
    """A module that only makes its old name an alias of the new one (``alias_module`` / ``alias_package``)."""
    for node in tree.body:
        value = node.value if isinstance(node, (ast.Expr, ast.Assign)) else None
        if isinstance(value, ast.Call) and getattr(value.func, "id", None) in ("alias_module", "alias_package"):
            return True
    return False


def _imports(name: str, path: Path, tree: ast.Module, modules: set[str]) -> set[str]:
    """carl_geo modules that ``name`` imports anywhere (also inside functions): ``import x`` and ``from x import y``
    (``x.y`` when that is a module), relative imports resolved."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.add(sub if sub in modules else base)
    return {m for m in found if m == "carl_geo" or m.startswith("carl_geo.")}


def _layer(module: str) -> int:
    """Index in :data:`LAYERS` of the longest prefix matching ``module``."""
    best, level = -1, None
    for i, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best:
                best, level = len(prefix), i
    assert level is not None, f"{module} is in no layer: add it to LAYERS in tests/test_layout.py"
    return level


def _import_graph() -> tuple[dict[str, set[str]], set[str]]:
    """(module -> carl_geo modules it imports, deprecated alias modules)."""
    files = _source_modules()
    graph, aliases = {}, set()
    for name, path in files.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        if _is_deprecated_alias(tree):
            aliases.add(name)
        graph[name] = _imports(name, path, tree, set(files))
    return graph, aliases


def test_layers_point_one_way() -> None:
    """No module imports a layer above its own (LAYERS), except the listed ALLOWED pairs. Deprecated alias
    modules (old names of moved modules) are exempt, and so is the package root (its lazy public names)."""
    graph, aliases = _import_graph()
    upward = set()
    for module, imported in graph.items():
        if module in aliases or module == "carl_geo":
            continue
        for target in imported - {"carl_geo"}:
            if _layer(target) > _layer(module):
                upward.add((module, target))
    new = sorted(upward - set(ALLOWED))
    names = [n for n, _ in LAYERS]
    assert not new, "imports of a higher layer (module -> imported, layers " + " < ".join(names) + "):\n" + "\n".join(
        f"  {m} ({names[_layer(m)]}) -> {t} ({names[_layer(t)]})" for m, t in new)
    gone = sorted(set(ALLOWED) - upward)
    assert not gone, f"ALLOWED lists imports that are gone; remove them: {gone}"


def test_no_module_imports_a_deprecated_name() -> None:
    graph, aliases = _import_graph()
    found = sorted((m, t) for m, imported in graph.items() if m not in aliases for t in imported & aliases)
    assert not found, f"imports of deprecated module names (import the new place): {found}"


def test_layer_test_sees_imports_inside_functions_and_relative_ones() -> None:
    source = "from . import knn\nfrom ..errors import CarlGeoError\ndef f():\n    import carl_geo.trainers.base\n"
    found = _imports("carl_geo.ssl.loss", ROOT / "carl_geo/ssl/loss.py", ast.parse(source),
                     {"carl_geo.ssl.knn", "carl_geo.errors", "carl_geo.trainers.base"})
    assert found == {"carl_geo.ssl.knn", "carl_geo.errors", "carl_geo.trainers.base"}
    assert _layer("carl_geo.trainers.base") > _layer("carl_geo.ssl.loss") > _layer("carl_geo.datasets.raster")
    assert _layer("carl_geo.inference.cli") == _layer("carl_geo.cli") > _layer("carl_geo.evaluation.geobench.runner")


def test_moved_data_modules_keep_their_old_names() -> None:
    """Issue #29: GEO-Bench's data files, the k-NN vote, the SSL datasets and the pretrain CLI moved; their old
    names are the same modules, with a DeprecationWarning that names the new place."""
    moved = {
        "carl_geo.evaluation.geobench.reader": "carl_geo.datasets.geobench.reader",
        "carl_geo.evaluation.geobench.dataset": "carl_geo.datasets.geobench.dataset",
        "carl_geo.evaluation.geobench.pickles": "carl_geo.datasets.geobench.pickles",
        "carl_geo.evaluation.geobench.augment": "carl_geo.datasets.geobench.augment",
        "carl_geo.evaluation.geobench.synthetic": "carl_geo.datasets.geobench.synthetic",
        "carl_geo.evaluation.knn": "carl_geo.ssl.knn",
        "carl_geo.ssl.layouts": "carl_geo.datasets.pretraining_corpora",
        "carl_geo.ssl.band_subset": "carl_geo.datasets.band_subset",
        "carl_geo.ssl.synthetic": "carl_geo.datasets.synthetic_spectra",
        "carl_geo.ssl.cli": "carl_geo.ssl_cli",
    }
    for old, new in moved.items():
        sys.modules.pop(old, None)
        with pytest.warns(DeprecationWarning, match=rf"{new}.*removed in carl_geo 0\.3"):
            module = importlib.import_module(old)
        assert module is importlib.import_module(new), old
    with pytest.warns(DeprecationWarning, match=r"carl_geo\.datasets\.geobench\.options\.NORMALIZATIONS"):
        from carl_geo.evaluation.geobench.options import NORMALIZATIONS
    from carl_geo.datasets.geobench import options

    assert NORMALIZATIONS is options.NORMALIZATIONS
    # a pickled GEO-Bench record class path and a pickled dataset class under the old module name still load
    from carl_geo.datasets.geobench.dataset import GeoBenchDataset
    from carl_geo.datasets.pretraining_corpora import HySpecNet11k

    for cls, old in ((GeoBenchDataset, "carl_geo.evaluation.geobench.dataset"), (HySpecNet11k, "carl_geo.ssl.layouts")):
        data = pickle.dumps(cls, protocol=0).replace(cls.__module__.encode(), old.encode())
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            assert pickle.loads(data) is cls


def test_every_torch_dataset_lives_in_datasets() -> None:
    from torch.utils.data import Dataset

    homes = [c for c in _classes_defined_in_carl_geo() if issubclass(c, Dataset)]
    assert len(homes) >= 10
    assert all(c.__module__.startswith("carl_geo.datasets.") for c in homes), \
        [f"{c.__module__}.{c.__name__}" for c in homes if not c.__module__.startswith("carl_geo.datasets.")]


def test_check_choice_has_one_wording() -> None:
    from carl_geo.errors import CarlGeoError, check_choice
    from carl_geo.evaluation.geobench.settings import GeoBenchSettings

    assert check_choice("mode", "linear", ("linear", "knn")) == "linear"
    with pytest.raises(CarlGeoError, match=r"^mode must be one of linear, knn, got 'x'$"):
        check_choice("mode", "x", ("linear", "knn"))
    with pytest.raises(CarlGeoError, match=r"^band_order must be one of stored, corrected, got 'x'$"):
        GeoBenchSettings(band_order="x")


def test_every_must_be_one_of_goes_through_check_choice() -> None:
    """One wording: no module writes its own "must be one of" message (errors.check_choice does)."""
    own = [str(p.relative_to(ROOT)) for p in (ROOT / "carl_geo").rglob("*.py")
           if p.name != "errors.py" and "must be one of" in p.read_text(encoding="utf-8")]
    assert not own, own
