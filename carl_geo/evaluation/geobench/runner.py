"""Evaluate a CARL checkpoint on GEO-Bench: every (task, seed) run, resumable, then the result tables.

Output folder layout::

    OUT/settings.json                                  settings that change the numbers (checked on resume)
    OUT/runs/<task>/<partition>/<mode>/seed<k>.json    one record per finished run (skipped when present)
    OUT/runs/<task>/<partition>/<mode>/seed<k>/        its Lightning CSV log (metrics.csv, hparams.yaml)
    OUT/results.csv, results.json, results.md, results.png, runs.csv

Runs go in sequence. ``devices > 1`` trains each run data-parallel with Lightning's own DDP
launch (``strategy="ddp"``); only global rank 0 writes files. What runs and how:
:class:`~carl_geo.evaluation.geobench.settings.GeoBenchSettings` (re-exported here).
"""

from __future__ import annotations

import json
import os
import platform
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from carl_geo.datamodules.geobench import GeoBenchDataModule
from carl_geo.datasets.geobench.dataset import GeoBenchDataset
from carl_geo.datasets.geobench.reader import GeoBenchTask, find_tasks, load_task
from carl_geo.devices import uses_cuda
from carl_geo.errors import CarlGeoError
from carl_geo.evaluation.geobench import results as res
from carl_geo.evaluation.geobench.options import RANDOM
from carl_geo.evaluation.geobench.settings import SIGNATURE_FIELDS, GeoBenchSettings  # noqa: F401 (re-exported)
from carl_geo.io.output_paths import atomic_path


@dataclass
class GeoBenchReport:
    """What :func:`run_geobench` did: summary rows, run records, files written, runs run/skipped."""

    rows: list[dict[str, Any]]
    records: list[dict[str, Any]]
    files: dict[str, Path]
    ran: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    wall_s: float = 0.0


def _is_rank_zero() -> bool:
    from lightning.fabric.utilities.rank_zero import rank_zero_only

    return getattr(rank_zero_only, "rank", 0) == 0


def select_tasks(root: Path, names: Sequence[str] | None) -> list[GeoBenchTask]:
    """Load the requested tasks (``None``: the five with a published number; ``["all"]``: every task found).

    Raises:
        ValueError: a requested task is not under ``root`` (the message lists those found).
    """
    found = find_tasks(root)
    if not found:
        raise CarlGeoError(f"no GEO-Bench task (folder with task_specs.pkl) under {root}")
    if names and list(names) == ["all"]:
        wanted = sorted(found)
    else:
        wanted = list(names) if names else list(res.PAPER_TASKS)
    missing = [n for n in wanted if n not in found]
    if missing:
        hint = "" if names else " (default: the CARL paper's tasks; pass --tasks, or --tasks all)"
        raise CarlGeoError(f"task(s) {', '.join(missing)} not found under {root}{hint}; "
                           f"found: {', '.join(sorted(found))}")
    return [load_task(found[n]) for n in dict.fromkeys(wanted)]


def preflight(task: GeoBenchTask, settings: GeoBenchSettings) -> None:
    """Cheap checks before any training: mode fits the task, partition and sample files exist,
    bands with wavelengths exist, band statistics exist when needed, the first sample reads."""
    if settings.mode == "knn" and task.kind == "segmentation":
        raise CarlGeoError(f"k-NN mode evaluates classification tasks only; {task.name} is a segmentation task")
    partition = task.resolve_partition(settings.partition)
    missing = task.missing_samples(partition)
    if missing:
        more = f" (+{len(missing) - 3} more)" if len(missing) > 3 else ""
        raise FileNotFoundError(f"task {task.name}: {len(missing)} sample file(s) of partition {partition} missing: "
                                + ", ".join(map(str, missing[:3])) + more)
    if task.bands and not task.spectral_bands:
        raise CarlGeoError(f"task {task.name} has no band with a wavelength; CARL cannot use it")
    GeoBenchDataset(task, "train", partition, settings.normalization, settings.band_order, 1)[0]


def run_dir(settings: GeoBenchSettings, task: GeoBenchTask, seed: int) -> Path:
    """``OUT/runs/<task>/<partition>/<mode>/seed<k>`` (its record is the same path + ``.json``)."""
    partition = task.resolve_partition(settings.partition)
    return settings.out / "runs" / task.name / partition / settings.mode / f"seed{seed}"


def check_settings_file(settings: GeoBenchSettings) -> None:
    """Create ``OUT/settings.json`` or check that it matches (resuming with other settings would mix results).

    Raises:
        ValueError: names the differing settings.
    """
    path = settings.out / "settings.json"
    sig = json.loads(json.dumps(settings.signature()))
    if path.is_file():
        old = json.loads(path.read_text())
        diff = [f"{k}: {old.get(k)!r} there, {sig.get(k)!r} now" for k in sorted(set(old) | set(sig))
                if old.get(k) != sig.get(k)]
        if diff:
            raise CarlGeoError(f"{settings.out} holds results made with other settings ({'; '.join(diff)}); "
                               "use another --out, or delete that folder to start over")
    elif _is_rank_zero():
        settings.out.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(sig, indent=2))


def _write_json_atomic(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2))


def _device_name(accelerator: str) -> str:
    if uses_cuda(accelerator):
        return torch.cuda.get_device_name(0)
    return f"cpu ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)"


def _base_record(task: GeoBenchTask, settings: GeoBenchSettings, seed: int, dm: GeoBenchDataModule) -> dict[str, Any]:
    import carl_geo

    return {
        "task": task.name, "kind": task.kind, "partition": dm.partition, "mode": settings.mode, "seed": seed,
        "metric": res.PRIMARY_METRIC[task.kind], "num_classes": task.num_classes, "class_names": task.class_names,
        "bands": [b.name for b in task.spectral_bands],
        "dropped_bands": [b.name for b in task.bands if b.wavelength is None],
        "sizes": dm.sizes(), "settings": json.loads(json.dumps(settings.signature())),
        "precision": settings.resolved_precision(), "device": _device_name(settings.accelerator),
        "versions": {"carl_geo": carl_geo.__version__, "torch": torch.__version__},
    }


def train_and_test(task: GeoBenchTask, settings: GeoBenchSettings, seed: int) -> dict[str, Any] | None:
    """One training run (linear / finetune / scratch): fit, select the best validation epoch,
    test. Returns the run record (``None`` on ranks other than 0)."""
    from lightning.pytorch import Trainer, seed_everything
    from lightning.pytorch.loggers import CSVLogger

    from carl_geo.evaluation.geobench.selection import KeepBestState
    from carl_geo.trainers.geobench import build_task, monitor_metric

    seed_everything(seed, workers=True, verbose=False)
    dm = GeoBenchDataModule(task, settings.partition, settings.batch_size, settings.num_workers,
                            settings.normalization, settings.band_order, settings.max_samples)
    spatial_init, spectral_init = settings.encoder_inits()
    module = build_task(task.kind, task.num_classes, config=settings.config, weights=settings.weights,
                        mode=settings.mode, lr=settings.lr, weight_decay=settings.weight_decay,
                        backbone_lr_factor=settings.backbone_lr_factor, class_names=task.class_names,
                        image_size=settings.image_size, head=settings.head, head_kwargs=settings.head_kwargs(),
                        spatial_init=spatial_init, spectral_init=spectral_init)
    keeper = KeepBestState(monitor_metric(task.kind))
    rdir = run_dir(settings, task, seed)
    n_batches = max(1, dm.sizes()["train"] // settings.batch_size)
    trainer = Trainer(
        max_epochs=settings.epochs, accelerator=settings.accelerator, devices=settings.devices,
        strategy=settings.strategy, precision=settings.resolved_precision(),
        logger=CSVLogger(rdir.parent, name="", version=rdir.name), callbacks=[keeper],
        check_val_every_n_epoch=min(settings.val_every, settings.epochs), num_sanity_val_steps=0,
        enable_checkpointing=False, enable_model_summary=False, enable_progress_bar=settings.progress,
        log_every_n_steps=min(10, n_batches), default_root_dir=rdir,
    )
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*overridden `on_after_batch_transfer`.*")
        trainer.fit(module, datamodule=dm)
    fit_s = time.perf_counter() - t0
    keeper.restore(module)
    test = trainer.test(module, datamodule=dm, verbose=False)[0]
    if not trainer.is_global_zero:
        return None
    primary = res.PRIMARY_METRIC[task.kind]
    rec = _base_record(task, settings, seed, dm)
    rec.update({
        "score": 100.0 * float(test[f"test_{primary}"]),
        "test": {k: float(v) for k, v in sorted(test.items())},
        "val_best": keeper.best_score, "best_epoch": keeper.best_epoch, "epochs": settings.epochs,
        "fit_s": round(fit_s, 3), "wall_s": round(time.perf_counter() - t0, 3),
        "s_per_epoch": round(fit_s / settings.epochs, 4), "log_dir": str(rdir),
    })
    if task.kind == "segmentation":
        rec["per_class_iou"] = {n: float(test[f"test_IoU_{n}"]) for n in task.class_names if f"test_IoU_{n}" in test}
    return rec


def knn_run(task: GeoBenchTask, settings: GeoBenchSettings, seed: int) -> dict[str, Any]:
    """One k-NN evaluation on frozen features."""
    from carl_geo.evaluation.geobench.knn import run_knn
    from carl_geo.trainers.base import build_backbone

    torch.manual_seed(seed)
    dm = GeoBenchDataModule(task, settings.partition, settings.batch_size, settings.num_workers,
                            settings.normalization, settings.band_order, settings.max_samples)
    spatial_init, spectral_init = settings.encoder_inits()
    backbone = build_backbone(settings.config, settings.weights, spatial_init=spatial_init,
                              spectral_init=spectral_init)
    device = torch.device("cuda" if uses_cuda(settings.accelerator) else "cpu")
    t0 = time.perf_counter()
    loaders = {s: dm.loader(s) for s in ("train", "valid", "test")}
    out = run_knn(backbone, loaders, task.num_classes, task.kind == "multilabel", settings.image_size, device,
                  bf16=settings.resolved_precision().startswith("bf16"))
    primary = res.PRIMARY_METRIC[task.kind]
    rec = _base_record(task, settings, seed, dm)
    rec.update({"score": 100.0 * out[f"test_{primary}"],
                "test": {k: v for k, v in out.items() if k.startswith("test_")},
                "val_best": out[f"val_{primary}"], "k": out["k"], "wall_s": round(time.perf_counter() - t0, 3)})
    return rec


def collect_records(out: Path) -> list[dict[str, Any]]:
    """Every run record under ``OUT/runs``."""
    recs = []
    for p in sorted((out / "runs").glob("*/*/*/seed*.json")):
        try:
            recs.append(json.loads(p.read_text()))
        except json.JSONDecodeError as e:
            raise CarlGeoError(f"corrupt run record {p} ({e}); delete it to run that seed again") from None
    return recs


def write_tables(out: Path, records: list[dict[str, Any]],
                 title: str | None = None) -> tuple[list[dict[str, Any]], dict[str, Path]]:
    """Summary rows and the files: results.csv/json/md/png and runs.csv (one line per run)."""
    rows = res.summarize(records)
    meta = json.loads((out / "settings.json").read_text()) if (out / "settings.json").is_file() else {}
    files = {
        "csv": res.write_csv(rows, out / "results.csv"),
        "json": res.write_json(rows, out / "results.json", meta={"settings": meta, "runs": len(records)}),
        "markdown": res.write_markdown(rows, out / "results.md", title),
        "runs_csv": res.write_csv(records, out / "runs.csv",
                                  ("task", "partition", "mode", "seed", "metric", "score", "val_best", "best_epoch",
                                   "epochs", "wall_s", "s_per_epoch", "device", "precision")),
    }
    if rows:
        files["chart"] = res.write_chart(rows, out / "results.png", title)
    return rows, files


def run_geobench(settings: GeoBenchSettings, log: Callable[[str], None] = print) -> GeoBenchReport:
    """Evaluate ``settings.checkpoint`` on the requested GEO-Bench tasks.

    Every check that can fail on user input runs before the first training step. Finished
    runs (their record exists in ``OUT/runs``) are skipped, so an interrupted evaluation
    resumes where it stopped.
    """
    t0 = time.perf_counter()
    settings.validate()
    tasks = select_tasks(settings.root, settings.tasks)
    for task in tasks:
        preflight(task, settings)
    check_settings_file(settings)
    runs = [(t, s) for t in tasks for s in settings.seed_list()]
    pending = [(t, s) for t, s in runs if not run_dir(settings, t, s).with_suffix(".json").is_file()]
    skipped = [f"{t.name}/seed{s}" for t, s in runs if (t, s) not in pending]
    if skipped:
        log(f"skipping {len(skipped)} finished run(s): {', '.join(skipped)}")
    if pending and settings.weights is not None:
        from carl_geo.models.checkpoint import load_carl
        from carl_geo.models.config import get_config

        load_carl(settings.weights, None if settings.config == "published" else get_config(settings.config))
    elif pending and any(settings.encoder_inits()):  # fetch / check the pretrained encoder weights up front
        from carl_geo.models.carl import CARL
        from carl_geo.models.config import get_config

        spatial_init, spectral_init = settings.encoder_inits()
        CARL(get_config(settings.config), spatial_init=spatial_init, spectral_init=spectral_init)
    ran = []
    bar = _progress(pending, settings.progress and _is_rank_zero())
    for task, seed in bar:
        if hasattr(bar, "set_description"):
            bar.set_description(f"{task.name} seed {seed}")
        run = knn_run if settings.mode == "knn" else train_and_test
        rec = run(task, settings, seed)
        if rec is not None and _is_rank_zero():
            _write_json_atomic(run_dir(settings, task, seed).with_suffix(".json"), rec)
            log(f"{task.name} seed {seed}: {rec['metric']} {rec['score']:.2f} % ({rec['wall_s']:.1f} s)")
        ran.append(f"{task.name}/seed{seed}")
    records = collect_records(settings.out)
    rows: list[dict[str, Any]] = []
    files: dict[str, Path] = {}
    if _is_rank_zero():
        ckpt = Path(settings.weights).name if settings.weights else no_checkpoint_label(*settings.encoder_inits())
        rows, files = write_tables(settings.out, records, f"GEO-Bench, {ckpt}")
    return GeoBenchReport(rows=rows, records=records, files=files, ran=ran, skipped=skipped,
                          wall_s=time.perf_counter() - t0)


def no_checkpoint_label(spatial_init: str | None, spectral_init: str | None) -> str:
    """Title of a run without SSL checkpoint, e.g. 'no SSL checkpoint (spatial: timm, spectral: random)'."""
    def name(v: str | None) -> str:
        return RANDOM if v is None else v if v == "timm" else Path(v).name

    if spatial_init is None and spectral_init is None:
        return "random init"
    return f"no SSL checkpoint (spatial: {name(spatial_init)}, spectral: {name(spectral_init)})"


def _progress(items: list, enabled: bool) -> Any:
    if not enabled:
        return items
    from tqdm.auto import tqdm

    return tqdm(items, desc="GEO-Bench runs", unit="run")


def settings_dict(settings: GeoBenchSettings) -> dict[str, Any]:
    """All settings as plain JSON types."""
    return json.loads(json.dumps(asdict(settings), default=str))
