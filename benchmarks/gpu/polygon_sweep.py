"""Polygon-training recipe sweeps on the GPU machine: many runs at once, at CPU-equivalent step counts.

A CPU run of ``bench_polygons.py`` on Sentinel-2 takes about 9 minutes; on one H200, 16 runs of the same
recipe (same batch, same number of steps as a 2-core CPU does in its time budget) finish together in
about 3 minutes. So a sweep measures recipe variants with several seeds each, as the CPU benchmark would
score them (same scenes, held-out references and :func:`bench_polygons.score`).

Three subcommands::

    python benchmarks/gpu/polygon_sweep.py prep                      # HERE: labels -> benchmarks/gpu/sweep_data/
    python benchmarks/gpu/polygon_sweep.py run PLAN.json OUT [--jobs 16] [--budget 400]   # on the GPU machine
    python benchmarks/gpu/polygon_sweep.py one RUN_JSON OUT          # one run (the child process of ``run``)

``prep`` needs geopandas (this machine): it rasterises the training polygons of the NC and Sentinel-2
scenes on the windows that :func:`carl_geo.polygon_training.train_from_polygons` reads, and the held-out
references, into ``sweep_data/scenes.pkl.gz`` (0.5 MiB, git-ignored; carry it). The GPU machine has no
geopandas, pandas, shapely or torchgeo: ``one`` puts empty stand-ins for the missing ones on the import
path and hands ``train_from_polygons`` the precomputed label rasters in place of its vector reading, so
everything else (plan, chips, band subsets, training loop, validation, checkpoints, ``predict_raster``)
is the product's code. Carry ``benchmarks/gpu/wheels`` (rasterio) too; ``run.sh sweep`` installs them.

A plan is a JSON list of runs: ``{"name": ..., "scene": "s2" | "nc", "seeds": [0, 1], "settings":
{TrainingRecipe fields}, "model": {"spectral": {"embed_dim": 48}, "spatial_depth": 1}}`` (``model``
optional: a variant of the ``tiny`` config). Write the CPU step count into ``settings`` (``max_steps``,
``batch_size``): the GPU would otherwise choose its own larger batch. ``run`` writes ``results.json``
(every finished run: mIoU / OA per band set, steps, best step, log tail), ``summary.md`` (mean and spread
per run name) and ``logs.txt``; few files, so that all of them come back from the device tool.
"""

from __future__ import annotations

import gzip
import importlib
import importlib.abc
import importlib.machinery
import json
import os
import pickle
import subprocess
import sys
import time
import types
from dataclasses import asdict
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
DATA = HERE / "sweep_data" / "scenes.pkl.gz"
#: Packages the GPU machine lacks that carl_geo imports on the polygon-training path but does not use there.
STUBBED = ("geopandas", "pandas", "shapely", "pyogrio", "torchgeo")


# ---- prep (here) ---------------------------------------------------------------------------------

def prep() -> None:
    """Label rasters, polygon facts and held-out references of the NC and Sentinel-2 scenes."""
    import numpy as np
    import rasterio

    sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]
    import bench_polygons as bp
    from carl_geo.datasets.vector_labels import polygons_on_grid, rasterize_labels, read_label_vector
    from carl_geo.polygon_training.chips import labels_window
    from carl_geo.polygon_training.polygons import _polygon_widths

    out: dict[str, Any] = {}
    for name in ("s2", "nc"):
        spec = bp.scene_spec(name, Path("/tmp"))
        gdf = read_label_vector(spec["polygons"], spec["label_field"])
        with rasterio.open(spec["image"]) as src:
            geoms, inside = polygons_on_grid(gdf, src.crs, tuple(src.bounds))
            bounds = tuple(float(v) for v in geoms[inside].total_bounds)
            labels = {}
            for margin in (16, 32, 64, 128):  # train_from_polygons reads chip_size (default 64) around the polygons
                window = labels_window(bounds, src.transform, (src.height, src.width), margin)
                labels[margin] = asdict(rasterize_labels(gdf, spec["label_field"], shape=(int(window.height),
                                        int(window.width)), transform=src.window_transform(window), crs=src.crs))
            widths = _polygon_widths(geoms[inside], src.transform)
        out[name] = {"total_bounds": bounds, "widths": widths, "labels": labels, "ref": spec["ref"].astype(np.int8),
                     "ref_names": spec["ref_names"], "label_field": spec["label_field"],
                     "image": str(Path(spec["image"]).resolve().relative_to(ROOT)),
                     "polygons": str(Path(spec["polygons"]).resolve().relative_to(ROOT))}
    DATA.parent.mkdir(exist_ok=True)
    DATA.write_bytes(gzip.compress(pickle.dumps(out), 6))
    print(f"{DATA}: {DATA.stat().st_size / 2**20:.2f} MiB")


# ---- one run (GPU machine) -----------------------------------------------------------------------

class _Stub(types.ModuleType):
    """An empty module: any attribute is a do-nothing class (enough for imports and annotations)."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return type(name, (), {"__init__": lambda self, *a, **k: None})


class _StubFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def __init__(self, roots: set[str]) -> None:
        self.roots = roots

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        if fullname.split(".")[0] in self.roots:
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        return None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        module = _Stub(spec.name)
        module.__path__ = []
        return module

    def exec_module(self, module: types.ModuleType) -> None:
        pass


def install_stubs(force: bool = False) -> list[str]:
    """Stand-ins for the :data:`STUBBED` packages that cannot be imported (all of them with ``force``)."""
    missing = []
    for name in STUBBED:
        try:
            if force:
                raise ImportError(name)
            importlib.import_module(name)
        except Exception:
            missing.append(name)
    for loaded in [m for m in sys.modules if m.split(".")[0] in missing]:
        del sys.modules[loaded]
    if missing:
        sys.meta_path.insert(0, _StubFinder(set(missing)))
    os.environ["CARL_GEO_NO_TORCHGEO"] = "1"
    return missing


def one(run: dict[str, Any], out: Path) -> dict[str, Any]:
    """Train one recipe on one scene with the product's code, predict the scene (and the Sentinel-2 band
    subsets), score against the held-out reference."""
    missing = install_stubs(force=bool(os.environ.get("SWEEP_FORCE_STUBS")))
    import numpy as np
    import torch

    sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]
    import bench_polygons as bp
    import carl_geo.polygon_training.polygons as training
    from carl_geo.datasets.vector_labels import LabelRaster
    from carl_geo.inference import predict_raster
    from carl_geo.inference.writer import read_class_map
    from carl_geo.models import config as configs

    torch.set_num_threads(int(os.environ.get("SWEEP_THREADS", 1)))
    device = os.environ.get("SWEEP_DEVICE", "cuda")
    if device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    scene = pickle.loads(gzip.decompress(DATA.read_bytes()))[run["scene"]]
    settings = {**run.get("settings", {}), "seed": run["seed"]}
    labels = LabelRaster(**scene["labels"][int(settings.get("chip_size") or 64)])

    class _Geoms:  # what train_from_polygons asks of the reprojected polygons
        total_bounds = scene["total_bounds"]

        def __getitem__(self, _: Any) -> "_Geoms":
            return self

    def rasterize(_gdf: Any, _field: str, *, shape: tuple[int, int], **_: Any) -> LabelRaster:
        if tuple(shape) != labels.mask.shape:
            raise RuntimeError(f"window {shape} != prepared {labels.mask.shape}: rerun prep for this chip_size")
        return labels

    training.read_label_vector = lambda *a, **k: None
    training.polygons_on_grid = lambda *a, **k: (_Geoms(), None)
    training._polygon_widths = lambda *a, **k: tuple(scene["widths"])
    training.rasterize_labels = rasterize
    if run.get("model"):
        name = f"sweep_{run['name']}"

        def variant(spec: dict[str, Any] = run["model"]) -> Any:
            cfg = configs.get_config("tiny")
            for key, value in spec.get("spectral", {}).items():
                setattr(cfg.spectral, key, value)
            if "spatial_depth" in spec:
                cfg.spatial.depth = spec["spatial_depth"]
            if "spatial_dim" in spec:
                cfg.spatial.model_kwargs["embed_dim"] = spec["spatial_dim"]
            return cfg
        configs.CONFIGS[name] = variant
        training.HEAD_KWARGS[name] = training.HEAD_KWARGS["tiny"]
        settings["config"] = name

    tag = f"{run['name']}_s{run['seed']}"
    log: list[str] = []
    t0 = time.perf_counter()
    res = training.train_from_polygons(ROOT / scene["image"], ROOT / scene["polygons"], scene["label_field"],
                                       out / f"{tag}.pt", device=device, log=log.append, **settings)
    train_s = time.perf_counter() - t0
    names = list(res.bundle.class_names)
    rows = {}
    for label, bands in [("all bands", None)] + (list(bp.S2_SUBSETS.items()) if run["scene"] == "s2" else []):
        tif = out / f"{tag}_map.tif"
        predict_raster(res.bundle, ROOT / scene["image"], tif, device=device, bands=bands)
        pred, _ = read_class_map(tif)
        tif.unlink()
        s = bp.score(pred, names, scene["ref"].astype(np.int64), scene["ref_names"], names)
        rows[label.split(" (")[0]] = {"miou": s["miou"], "oa": s["oa"], "per_class_iou": s["per_class_iou"]}
    for f in [out / f"{tag}.pt", *out.glob(f"{tag}*.png")]:
        f.unlink(missing_ok=True)  # the model and its confusion PNG
    rep = res.report
    result = {"name": run["name"], "scene": run["scene"], "seed": run["seed"], "settings": run.get("settings", {}),
            "model": run.get("model"), "rows": rows, "train_s": round(train_s, 1), "steps": rep.get("steps"),
            "best_step": rep.get("best_step"), "stop_reason": rep.get("stop_reason"),
            "val_miou": round(rep["mean_iou"], 4), "stubbed": missing, "log_tail": log[-6:]}
    (out / f"{tag}.result.json").write_text(json.dumps(result))
    return result


# ---- run (GPU machine) ---------------------------------------------------------------------------

def expand(plan: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry per (run, seed)."""
    return [{**{k: v for k, v in r.items() if k != "seeds"}, "seed": s} for r in plan for s in r.get("seeds", [0])]


def summary(results: list[dict[str, Any]]) -> str:
    """Mean (min-max) mIoU per run name and band set."""
    import numpy as np

    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in results:
        groups.setdefault((r["scene"], r["name"]), []).append(r)
    lines = ["| scene | run | seeds | steps | mIoU all bands | 4 bands | 6 bands |", "|---|---|---|---|---|---|---|"]
    for (scene, name), rs in groups.items():
        cells = []
        for band_set in ("all bands", "4 bands", "6 bands"):
            v = [r["rows"][band_set]["miou"] for r in rs if band_set in r["rows"]]
            cells.append(f"{np.mean(v):.3f} ({min(v):.3f}-{max(v):.3f})" if v else "")
        seeds = ",".join(str(r["seed"]) for r in rs)
        lines.append(f"| {scene} | {name} | {seeds} | {rs[0]['steps']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def run_plan(plan_path: Path, out: Path, jobs: int, budget: float) -> None:
    """Every run of the plan in its own process, ``jobs`` at a time, killed at ``budget`` seconds."""
    runs = expand(json.loads(plan_path.read_text()))
    out.mkdir(parents=True, exist_ok=True)
    work = out / "work"
    work.mkdir(exist_ok=True)
    t_end = time.time() + budget
    pending, live, results, logs = list(runs), [], [], []
    while pending or live:
        while pending and len(live) < jobs:
            r = pending.pop(0)
            tag = f"{r['name']}_s{r['seed']}"
            with open(work / f"{tag}.log", "w") as log_file:
                p = subprocess.Popen([sys.executable, "-W", "ignore", __file__, "one", json.dumps(r), str(work)],
                                     stdout=log_file, stderr=subprocess.STDOUT)
            live.append((p, r, time.time()))
        for item in list(live):
            p, r, started = item
            if p.poll() is None:
                continue
            live.remove(item)
            tag = f"{r['name']}_s{r['seed']}"
            text = (work / f"{tag}.log").read_text(errors="replace")
            logs.append(f"===== {r['name']} seed {r['seed']}: rc {p.returncode}, {time.time() - started:.0f} s\n{text}")
            result = work / f"{tag}.result.json"
            if p.returncode == 0 and result.exists():
                results.append(json.loads(result.read_text()))
                print(f"{r['name']} s{r['seed']}: {json.dumps({k: v['miou'] for k, v in results[-1]['rows'].items()})}",
                      flush=True)
            else:
                print(f"{r['name']} s{r['seed']}: FAILED rc {p.returncode}", flush=True)
        if time.time() > t_end:
            for p, r, _ in live:
                p.kill()
                logs.append(f"===== {r['name']} seed {r['seed']}: killed (budget)")
            break
        time.sleep(1)
    logs += [f"===== {r['name']} seed {r['seed']}: not started (budget)" for r in pending]
    (out / "results.json").write_text(json.dumps(results, indent=1))
    (out / "summary.md").write_text(summary(results))
    (out / "logs.txt").write_text("\n".join(logs))
    for f in work.glob("*"):
        f.unlink()
    work.rmdir()
    print(summary(results))


def main() -> None:
    args = sys.argv[1:]
    if not args or args[0] not in ("prep", "run", "one"):
        raise SystemExit(__doc__)
    if args[0] == "prep":
        prep()
    elif args[0] == "one":
        one(json.loads(args[1]), Path(args[2]))
    else:
        jobs = int(args[args.index("--jobs") + 1]) if "--jobs" in args else 16
        budget = float(args[args.index("--budget") + 1]) if "--budget" in args else 400
        run_plan(Path(args[1]), Path(args[2]), jobs, budget)


if __name__ == "__main__":
    main()
