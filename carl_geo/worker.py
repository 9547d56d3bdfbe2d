"""``python -m carl_geo.worker``: run one job for another program in a process of its own.

The QGIS plugin runs training, prediction and feature extraction here, in a child process of its own Python
environment, so that no library of that environment (torch, GEOS in shapely, PROJ in pyproj, GDAL in rasterio)
is loaded into QGIS's process next to QGIS's own builds of them, and a crash of the job cannot take QGIS down.

Protocol (one JSON object per line, UTF-8):

* stdin: the job, ``{"job": "train" | "predict" | "check", "args": {...}}``, optionally with
  ``"interface": {"name": "gui", "labels": {"normalization": "Normalisation", ...}}`` so that error messages name
  the caller's parameters (:func:`carl_geo.errors.set_interface`);
* stdout: events ``{"event": "progress", "done": d, "total": t}``, ``{"event": "log", "text": ...}``,
  ``{"event": "warning", "text": ...}``, then ``{"event": "result", ...}`` or ``{"event": "error", "text": ...,
  "status": n}``; nothing else is ever written to stdout (library prints go to stderr);
* stderr: everything else (kept by the parent in a log file);
* SIGTERM (the parent's Cancel) ends the job as Ctrl-C ends a command: no half-written output is left.

Exit status: 0 after a result, 2 (bad input) / 1 (file error) after an error event, 143 when terminated.

Jobs:

* ``train``: :func:`carl_geo.polygon_training.train_from_polygons` (``args``: its arguments, recipe fields
  included); result: ``model_path``, ``report``, ``class_names``, ``colors``, ``class_values``.
* ``predict``: :func:`carl_geo.inference.predict_raster` (``args``: ``model`` (a file), ``src``, ``dst``,
  ``wavelengths`` / ``sensor`` / ``bands``, ``overwrite`` and :class:`~carl_geo.inference.PredictSettings` fields);
  result: ``path``, ``count``, ``output`` and the model's ``class_names``, ``colors``, ``class_values``.
* ``polygons``: one dissolved (multi)polygon per class of a one-band class raster (``args``: ``class_raster``,
  ``out``, a GeoPackage to write); result: ``path``, ``classes`` (``[[value, pixels], ...]``).
* ``weights``: the published CARL-SSL checkpoint, downloaded when missing (``args``: ``force``); result: ``path``.
* ``check``: the versions of Python, torch (and its CUDA build), carl_geo; imports them, reads no file.

``train`` and ``predict`` also take ``protect``: ``[[label, path], ...]`` files the job reads besides its own
inputs (and ``protect_rasters``, rasters whose VRT sources count too); an output that is one of them is refused
before any work (:func:`carl_geo.io.output_paths.check_outputs`). Both also take ``later_outputs``
(``[[label, path], ...]``): files the caller writes after the job (a class map after training, class polygons after
prediction), refused before the work when they are one of those files, one of the job's inputs or its output.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import warnings
from collections.abc import Callable, Sequence
from typing import Any, TextIO


class Events:
    """Writes protocol events to the real stdout (thread safe); ``sys.stdout`` is sent to stderr meanwhile.

    ``cancelled()``, when given, is asked at every progress event (a job run inside another program's process,
    where no SIGTERM can reach it)."""

    def __init__(self, stream: TextIO | None, cancelled: Callable[[], bool] | None = None) -> None:
        self.stream = stream
        self.cancelled = cancelled
        self.lock = threading.Lock()

    def send(self, event: str, **fields: Any) -> None:
        line = json.dumps({"event": event, **fields}, default=str)
        with self.lock:
            self.stream.write(line + "\n")  # type: ignore[union-attr]
            self.stream.flush()  # type: ignore[union-attr]

    def progress(self, done: int, total: int) -> bool:
        self.send("progress", done=int(done), total=int(total))
        return not (self.cancelled is not None and self.cancelled())

    def log(self, text: str) -> None:
        self.send("log", text=str(text))


def _bundle_facts(bundle: Any) -> dict[str, Any]:
    return {"class_names": list(bundle.class_names), "colors": [list(c) for c in bundle.colors],
            "class_values": list(bundle.class_values) if bundle.class_values is not None else None,
            "task": bundle.task}


def _protect(args: dict[str, Any], output: tuple[str, Any], rasters: Sequence[tuple[str, Any]] = (),
             reads: Sequence[tuple[str, Any]] = ()) -> None:
    """Refuse the job's ``output`` and the caller's ``args["later_outputs"]`` (files it writes after the job) when
    they are files listed in ``args["protect"]`` / ``args["protect_rasters"]`` (all three popped). Later outputs are
    also compared with the job's own inputs (``rasters`` / ``reads``; the job checks its own output against them
    itself), so that a clash is refused before minutes of work, not after them."""
    later = [(str(label), path) for label, path in args.pop("later_outputs", None) or []]
    reads = [*(reads if later else ()), *((str(label), path) for label, path in args.pop("protect", None) or [])]
    rasters = [*(rasters if later else ()),
               *((str(label), path) for label, path in args.pop("protect_rasters", None) or [])]
    if reads or rasters:
        from carl_geo.io.output_paths import check_outputs, reads_of

        check_outputs([output, *later], reads_of(rasters, reads), overwrite=True)


def job_train(args: dict[str, Any], events: Events) -> dict[str, Any]:
    from carl_geo.polygon_training import train_from_polygons

    _protect(args, ("model file", args.get("out")), [("input raster", args.get("raster"))],
             [("label file", args.get("labels")), ("weights file", args.get("weights"))])
    result = train_from_polygons(**args, progress=events.progress, log=events.log)
    return {"model_path": str(result.model_path), "report": result.report, **_bundle_facts(result.bundle)}


def job_predict(args: dict[str, Any], events: Events) -> dict[str, Any]:
    from carl_geo.inference import predict_raster
    from carl_geo.inference.outputs import default_output
    from carl_geo.models import load_bundle

    args = dict(args)
    _protect(args, ("output", args.get("dst")), [("input raster", args.get("src"))], [("model file", args.get("model"))])
    bundle = load_bundle(args.pop("model"))
    output = args.pop("output", None) or default_output(bundle.task)
    src, dst = args.pop("src"), args.pop("dst")
    res = predict_raster(bundle, src, dst, output=output, progress=events.progress, **args)
    return {"path": str(res.path), "count": res.count, "output": res.output, "seconds": round(res.seconds, 2),
            "device": res.device, "precision": res.precision, **_bundle_facts(bundle)}


def job_polygons(args: dict[str, Any], events: Events) -> dict[str, Any]:
    import geopandas as gpd
    import numpy as np
    import rasterio
    from affine import Affine
    from rasterio.features import shapes
    from shapely.geometry import MultiPolygon, shape
    from shapely.ops import transform as shapely_transform

    from carl_geo.io.georeference import pixel_to_map
    from carl_geo.io.output_paths import atomic_path

    with rasterio.open(args["class_raster"]) as ds:
        data = ds.read(1)
        valid = data != ds.nodata if ds.nodata is not None else np.ones(data.shape, bool)
        transform, crs = ds.transform, ds.crs
        to_map = None if crs is not None else pixel_to_map(ds)  # a class map placed by GCPs or RPCs
    if to_map is not None:
        transform, (place, crs) = Affine.identity(), to_map
    regions: dict[int, list[Any]] = {}
    for geom, value in shapes(data, mask=valid, transform=transform, connectivity=4):
        poly = shape(geom)
        regions.setdefault(int(value), []).append(poly if to_map is None else shapely_transform(place, poly))
    values, counts = np.unique(data[valid], return_counts=True)
    pixels = {int(v): int(c) for v, c in zip(values, counts)}
    order = sorted(regions)
    geoms = [MultiPolygon([p for poly in regions[v] for p in getattr(poly, "geoms", [poly])]) for v in order]
    frame = gpd.GeoDataFrame({"class_id": order, "pixels": [pixels.get(v, 0) for v in order]}, geometry=geoms, crs=crs)
    with atomic_path(args["out"]) as tmp:
        frame.to_file(tmp, driver="GPKG", layer="classes")
    return {"path": str(args["out"]), "classes": [[v, pixels.get(v, 0)] for v in order]}


def job_weights(args: dict[str, Any], events: Events) -> dict[str, Any]:
    from carl_geo import weights

    spec = weights.get_weights_file("carl_ssl")
    events.log(f"CARL-SSL weights: {weights.weights_path(spec)} (from {spec.url})")
    call = weights.download_weights if args.get("force") else weights.ensure_weights
    return {"path": str(call(spec, progress=events.progress, log=events.log))}


def job_check(args: dict[str, Any], events: Events) -> dict[str, Any]:
    import platform

    import torch

    import carl_geo

    return {"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
            "cuda_available": bool(torch.cuda.is_available()), "carl_geo": getattr(carl_geo, "__version__", ""),
            "executable": sys.executable}


JOBS: dict[str, Callable[[dict[str, Any], Events], dict[str, Any]]] = {
    "train": job_train, "predict": job_predict, "polygons": job_polygons, "weights": job_weights, "check": job_check}


def run(job: dict[str, Any], events: Events) -> int:
    """Run ``job`` and send its events; returns the exit status."""
    from carl_geo.cli_runtime import set_gdal_network_defaults
    from carl_geo.errors import set_interface

    set_gdal_network_defaults()
    gui = job.get("interface")  # {"name": "gui", "labels": {...}}: errors name the GUI's parameters
    previous = set_interface("gui", dict(gui.get("labels") or {})) if isinstance(gui, dict) else None
    try:
        return _run(job, events)
    finally:
        if previous is not None:
            set_interface(previous)


def _run(job: dict[str, Any], events: Events) -> int:
    from carl_geo.cli_runtime import EXIT_TERMINATED, error_line, quiet_gdal_log, sigterm_as_interrupt
    from carl_geo.errors import Cancelled, CarlGeoWarning

    name = job.get("job")
    if name not in JOBS:
        events.send("error", text=f"unknown job {name!r}; jobs: {', '.join(JOBS)}", status=2)
        return 2

    def show(message: Any, category: type, filename: str, lineno: int, file: Any = None, line: Any = None) -> None:
        if issubclass(category, CarlGeoWarning):
            events.send("warning", text=str(message))
        else:  # other libraries' warnings: the log file, not the user's log
            print(f"{category.__name__}: {message}", file=sys.stderr)

    with warnings.catch_warnings(), sigterm_as_interrupt(), quiet_gdal_log() as gdal_messages:
        warnings.simplefilter("always", CarlGeoWarning)
        warnings.showwarning = show
        try:
            result = JOBS[name](dict(job.get("args") or {}), events)
        except (KeyboardInterrupt, Cancelled) as e:
            events.send("error", text="interrupted: nothing was written" if type(e) is KeyboardInterrupt else
                        "cancelled: nothing was written", status=EXIT_TERMINATED, cancelled=True)
            return EXIT_TERMINATED
        except Exception as e:  # noqa: BLE001 - every error becomes one event line
            found = error_line(e, gdal_messages)
            if found is None:  # a bug: the traceback goes to the log file
                import traceback

                traceback.print_exc()
                events.send("error", text=f"{type(e).__name__}: {e}", status=1, bug=True)
                return 1
            events.send("error", text=found[0], status=found[1], kind=type(e).__name__)
            return found[1]
    events.send("result", **result)
    return 0


def main() -> int:
    events = Events(sys.stdout)
    sys.stdout = sys.stderr  # library prints must not mix with the events
    try:
        job = json.loads(sys.stdin.readline() or "{}")
    except ValueError as e:
        events.send("error", text=f"the job is not JSON: {e}", status=2)
        return 2
    os.environ.setdefault("MPLBACKEND", "Agg")
    return run(job if isinstance(job, dict) else {}, events)


if __name__ == "__main__":
    sys.exit(main())
