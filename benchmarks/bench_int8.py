"""int8 CPU inference: speed and accuracy cost of ``precision="int8"`` and the alternatives measured.

Speed (one process, paired alternating rounds of benchmarks/timing.py: speed-ups are medians of per-round
ratios, with their range; ``--configs``, 13 bands, ``--size`` (128) px, batch ``--batch`` (2)), same randomly
initialised weights everywhere:

* ``upstream fp32``: the upstream CARL code (``--upstream``: folder holding its ``carl`` package);
* ``carl_geo fp32``: ``carl_geo.CARL`` in eager float32 (the default path);
* ``carl_geo bf16``: what ``precision="bf16"`` runs on a CPU (bf16 autocast, linear weights cast once by
  :func:`carl_geo.inference.runner.linear_weights_cast`); fast only where the CPU has bf16 matrix units (AMX);
* ``int8 ONNX Runtime``: :mod:`carl_geo.inference.int8` (what ``precision="int8"`` runs);
* ``fp32 ONNX Runtime``: the same ONNX export, not quantised (how much is ONNX Runtime alone);
* ``torch.ao dynamic int8``: ``torch.ao.quantization.quantize_dynamic`` on the Linear layers
  (deprecated API, the issue's first try);
* ``torchao int8 eager``: torchao's ``Int8DynamicActivationInt8WeightConfig`` without
  ``torch.compile`` (when torchao is installed).

Each is also scored by the cosine similarity of its spatial features to ``carl_geo fp32`` (mean over
pixels). ``--threads 2,1`` repeats carl_geo fp32 and int8 at each torch / ONNX Runtime thread count.

Accuracy of ``predict_raster(..., precision=P)`` vs float32, P = ``--precision`` (int8, or bf16): class agreement on
valid pixels, per-pixel feature cosine, on:

* the NC demo model (tiny CARL trained from the shipped Landsat 7 polygons, like ``carl-geo demo``)
  on the NC scene;
* a tiny CARL trained on a generated 13-band 1024^2 scene (``bench_models.generated_model``);
* the ``--configs`` backbones' embeddings on a generated 13-band 512^2 scene.

The machine load (``/proc/loadavg``) is recorded before and after. Writes ``bench_int8.json``,
``.md`` and ``.png`` to ``--out``.

Example::

    python benchmarks/bench_int8.py --upstream /path/to/CARL --configs published --threads 2,1 --out benchmarks/results
    # int8 with the models polygon training keeps (kept by bench_polygons):
    BENCH_KEEP_MODELS=/tmp/kept python benchmarks/bench_polygons.py --scenes nc,s2 --methods carl --tag kept
    python benchmarks/bench_int8.py --skip-speed --skip-accuracy --ensembles /tmp/kept --tag ensembles
    # the same for bf16 (the default on a CPU with AMX), and the forward with the bf16 candidate, 4 x 256 px:
    python benchmarks/bench_int8.py --skip-speed --skip-accuracy --ensembles /tmp/kept --precision bf16 --tag ensembles_bf16
    python benchmarks/bench_int8.py --upstream /path/to/CARL --threads 2 --batch 4 --size 256 --skip-accuracy --tag bf16_4x256
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import torch

sys.path.insert(0, str(Path(__file__).parent))

import carl_geo  # noqa: E402
from bench_models import class_agreement, feature_cosine, generated_model, nc_model, uptime  # noqa: E402
from bench_predictor import generate_raster  # noqa: E402
from timing import PairedTiming, cpu_model, time_paired  # noqa: E402
from carl_geo.inference import int8 as int8_mod  # noqa: E402
from carl_geo.inference import predict_raster  # noqa: E402
from carl_geo.inference.runner import cpu_has_bf16_units, linear_weights_cast  # noqa: E402

Fn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class Features(torch.nn.Module):
    """CARL -> its (B, D, h, w) spatial features (a plain tensor)."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, img: torch.Tensor, wavelengths: torch.Tensor) -> torch.Tensor:
        return self.model(img, wavelengths)[0]


def ort_fp32(module: torch.nn.Module, x: torch.Tensor, wl: torch.Tensor, threads: int) -> Fn:
    """The module exported to ONNX and run by ONNX Runtime in float32."""
    import onnxruntime as ort

    tmp = tempfile.mkdtemp(prefix="bench_int8_")
    path = Path(tmp) / "fp32.onnx"
    with int8_mod._quiet(), torch.no_grad():
        torch.onnx.export(module, (x, wl), str(path), input_names=["img", "wavelengths"], output_names=["out"],
                          dynamo=True, opset_version=int8_mod.OPSET, external_data=True, verbose=False)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads, opts.log_severity_level = threads, 1, 3
    if not int8_mod.SPIN:  # as the int8 sessions: spinning workers would slow the candidate timed next
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    return lambda a, b: torch.from_numpy(sess.run(None, {"img": a.numpy(), "wavelengths": b.numpy()})[0])


def candidates(config: str, x: torch.Tensor, wl: torch.Tensor, threads: int, upstream: Path | None,
               all_kinds: bool) -> tuple[dict[str, Fn], dict[str, float]]:
    """The forwards to time (name -> fn) and the seconds each took to prepare."""
    torch.manual_seed(0)
    ours = Features(carl_geo.CARL(carl_geo.get_config(config))).eval()
    fns: dict[str, Fn] = {}
    prep: dict[str, float] = {}
    if upstream is not None and all_kinds:
        from bench_vs_upstream import copy_weights, upstream_model

        theirs = upstream_model(upstream, carl_geo.get_config(config)).eval()
        copy_weights(ours.model, theirs)
        fns["upstream fp32"] = lambda a, b: theirs(a, b.expand(a.shape[0], -1))[0]
    fns["carl_geo fp32"] = ours
    low = linear_weights_cast(ours, torch.bfloat16)

    def bf16(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return low(a, b).float()

    fns["carl_geo bf16"] = bf16
    t = time.perf_counter()
    q = int8_mod.Int8Model(ours, threads=threads)
    q.session(x, wl)
    prep["int8 ONNX Runtime"] = time.perf_counter() - t
    fns["int8 ONNX Runtime"] = q
    if not all_kinds:
        return fns, prep
    t = time.perf_counter()
    fns["fp32 ONNX Runtime"] = ort_fp32(ours, x, wl, threads)
    prep["fp32 ONNX Runtime"] = time.perf_counter() - t
    t = time.perf_counter()
    fns["torch.ao dynamic int8"] = torch.ao.quantization.quantize_dynamic(copy.deepcopy(ours), {torch.nn.Linear},
                                                                          dtype=torch.qint8)
    prep["torch.ao dynamic int8"] = time.perf_counter() - t
    try:
        from torchao.quantization import Int8DynamicActivationInt8WeightConfig, quantize_
    except ImportError:
        pass
    else:
        t = time.perf_counter()
        m = copy.deepcopy(ours)
        quantize_(m, Int8DynamicActivationInt8WeightConfig())
        fns["torchao int8 eager"] = m
        prep["torchao int8 eager"] = time.perf_counter() - t
    return fns, prep


def time_alternating(fns: dict[str, Fn], x: torch.Tensor, wl: torch.Tensor, rounds: int,
                     block_seconds: float = 2.0) -> PairedTiming:
    """Seconds per call of every fn in paired, alternating rounds (benchmarks/timing.py)."""
    def call(f: Fn) -> Callable[[], Any]:
        def run() -> None:
            with torch.inference_mode():
                f(x, wl)
        return run

    return time_paired({k: call(f) for k, f in fns.items()}, rounds=rounds, block_seconds=block_seconds, warmup=1)


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.nn.functional.cosine_similarity(a.flatten(2).double(), b.flatten(2).double(), dim=1).mean())


def bench_speed(config: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    rows = []
    torch.manual_seed(1)
    x = torch.randn(args.batch, 13, args.size, args.size)
    wl = torch.tensor(carl_geo.get_sensor("sentinel2_l1c").wavelengths)
    for i, threads in enumerate(int(t) for t in args.threads.split(",")):
        torch.set_num_threads(threads)
        fns, prep = candidates(config, x, wl, threads, args.upstream, all_kinds=i == 0)
        t = time_alternating(fns, x, wl, args.rounds)
        with torch.inference_mode():
            ref = fns["carl_geo fp32"](x, wl)
            cos = {k: cosine(f(x, wl), ref) for k, f in fns.items()}
        for k in fns:
            vs_up = t.speedup(k, "upstream fp32") if "upstream fp32" in fns else None
            vs_ours = t.speedup(k, "carl_geo fp32")
            rows.append({"config": config, "threads": threads, "bands": 13, "size": args.size, "batch": args.batch,
                         "kind": k, "images_per_s": args.batch / t.median_seconds(k), "median_s": t.median_seconds(k),
                         "runs_s": t.seconds[k],
                         "speedup_vs_upstream_fp32": vs_up.median if vs_up else None,
                         "speedup_vs_upstream_fp32_range": [vs_up.low, vs_up.high] if vs_up else None,
                         "speedup_vs_carl_geo_fp32": vs_ours.median,
                         "speedup_vs_carl_geo_fp32_range": [vs_ours.low, vs_ours.high],
                         "feature_cosine": cos[k], "prepare_s": prep.get(k, 0.0), "load_before": t.load_before,
                         "load_after": t.load_after, "loaded": t.loaded})
            r = rows[-1]
            print(f"{config} {threads} thr {k:24s} {r['images_per_s']:7.3f} img/s  {vs_ours} vs carl_geo fp32"
                  + (f", {vs_up} vs upstream" if vs_up else "") + f"  cos {cos[k]:.5f}  (prep {r['prepare_s']:.1f} s, "
                  f"{t.load_text()})", flush=True)
    torch.set_num_threads(int(args.threads.split(",")[0]))
    return rows


def nc_scores(path: Path, bundle: Any, scene: Any) -> dict[str, float]:
    """Overall accuracy and mean IoU of a NC class map against ``strata.tif`` on the demo's evaluation
    pixels (valid, with a reference class, outside the training polygons), as ``carl-geo demo`` scores."""
    from carl_geo.demo import _read_scene, _score
    from carl_geo.inference.writer import read_class_map

    data = _read_scene(scene)
    pred, _ = read_class_map(path)
    # data["reference"]: the demo's scoring reference (-1 outside the valid pixels off the training polygons)
    s = _score(pred, list(bundle.class_names), data["reference"], scene.class_names, list(data["labels"].class_names))
    return {"overall_accuracy": s["overall_accuracy"], "mean_iou": s["mean_iou"]}


def compare_runs(bundle: Any, src: Path, out: Path, name: str, outputs: tuple[str, ...], scene: Any = None,
                 scorer: Callable[[Path], dict[str, float]] | None = None, low: str = "int8",
                 **kw: Any) -> dict[str, Any]:
    """predict_raster fp32 vs ``low`` (int8 or bf16) on ``src``: class agreement and/or feature cosine, and timings
    (``scene``: the NC scene, to score both class maps against its reference like the demo; ``scorer``: any other
    class map -> scores)."""
    res: dict[str, Any] = {"name": name, "precision": low, "load_before": uptime()}
    for output in outputs:
        paths = {}
        for precision in ("fp32", low):
            t = time.perf_counter()
            r = predict_raster(bundle, src, out / f"_{name}_{output}_{precision}.tif", output=output,
                               precision=precision, device="cpu", **kw)
            res[f"{output}_{precision}_s"] = time.perf_counter() - t
            res["pixels"], res["tiles"] = r.width * r.height, r.tiles
            paths[precision] = r.path
        if output == "classes":
            res["class_agreement"] = class_agreement(paths["fp32"], paths[low])["agreement"]
            if scene is not None:
                res["reference_scores"] = {k: nc_scores(v, bundle, scene) for k, v in paths.items()}
            elif scorer is not None:
                res["reference_scores"] = {k: scorer(v) for k, v in paths.items()}
        else:
            res["feature_cosine"] = feature_cosine(paths["fp32"], paths[low])
        for p in paths.values():
            p.unlink()
    res["load_after"] = uptime()
    print(f"accuracy {name}: {json.dumps({k: v for k, v in res.items() if not k.startswith('load')})}", flush=True)
    return res


def bench_accuracy(args: argparse.Namespace, data: Path, out: Path) -> list[dict[str, Any]]:
    rows = []
    low = args.precision
    bundle, scene = nc_model(data)
    rows.append(compare_runs(bundle, scene.image, out, "NC demo model, NC Landsat 7 scene",
                             ("classes", "embeddings"), scene=scene, low=low))
    gen_bundle, gen_src = generated_model(data)
    rows.append(compare_runs(gen_bundle, gen_src, out, "tiny CARL trained on a generated 13-band 1024^2 scene",
                             ("classes", "embeddings"), low=low))
    small = generate_raster(data / "bench_512.tif", 512)
    for config in args.configs.split(","):
        torch.manual_seed(0)
        feat = carl_geo.make_bundle(carl_geo.CARL(carl_geo.get_config(config)).eval(),
                                    normalization={"mode": "fixed", "mean": 1800.0, "std": 700.0})
        rows.append(compare_runs(feat, small, out, f"{config} backbone (random init), generated 13-band 512^2 scene",
                                 ("embeddings",), low=low))
    return rows


def bench_ensembles(folder: Path, data: Path, out: Path, low: str = "int8") -> list[dict[str, Any]]:
    """``low`` (int8 or bf16) vs fp32 with the models `carl-geo train` keeps (``{scene}_seed{N}.pt`` in ``folder``, as
    ``BENCH_KEEP_MODELS=folder python benchmarks/bench_polygons.py`` writes them) on their own scene: class
    agreement, and both maps scored like bench_polygons (mIoU on the held-out reference)."""
    from bench_polygons import scene_spec, score
    from carl_geo.inference.writer import read_class_map

    rows = []
    for path in sorted(folder.glob("*_seed*.pt")):
        scene = path.name.split("_seed")[0]
        if scene not in ("nc", "s2", "hsi"):
            continue
        bundle = carl_geo.load_bundle(path)
        spec = scene_spec(scene, data)
        names = list(bundle.class_names)

        def scorer(p: Path, spec: dict[str, Any] = spec, names: list[str] = names) -> dict[str, float]:
            s = score(read_class_map(p)[0], names, spec["ref"], spec["ref_names"], names)
            return {"overall_accuracy": s["oa"], "mean_iou": s["miou"]}

        heads = "+".join(h["type"] for h in bundle.model.config()["heads"]) if hasattr(bundle.model, "heads") else ""
        row = compare_runs(bundle, spec["image"], out, f"kept model ({type(bundle.model).__name__}"
                           f"{', CARL + ' + heads if heads else ''}), {scene} {path.stem.split('_')[-1]}",
                           ("classes",), scorer=scorer, low=low)
        rows.append({**row, "scene": scene, "model": path.name})
    return rows


def shape_text(rows: list[dict[str, Any]]) -> str:
    """``batch 4 x 256 x 256`` for the speed rows' input shape(s)."""
    shapes = sorted({(r["batch"], r["size"]) for r in rows}) or [(2, 128)]
    return ", ".join(f"batch {b} x {s} x {s}" for b, s in shapes)


def markdown(result: dict[str, Any]) -> str:
    m = result["meta"]
    cpu = f", {m['cpu']}" if m.get("cpu") else ""
    lines = [f"# bench_int8 ({m['machine']}{cpu}, torch {m['torch']}, onnxruntime {m['onnxruntime']})", "",
             f"Load average (1/5/15 min) at start: {m['load_start']}; at end: {m['load_end']}. The machine is shared "
             "(2 cores): candidates are timed in paired, alternating rounds in one process "
             "(benchmarks/timing.py); a speed-up is the median of the per-round ratios, with their range.", "",
             f"## Model forward, 13 bands, {shape_text(result.get('speed', []))}", "",
             "| config | threads | kind | images/s | x upstream fp32 (range) | x carl_geo fp32 (range) | feature cosine "
             "| prepare s | load |",
             "|---|---:|---|---:|---:|---:|---:|---:|---|"]
    if not result["speed"]:  # accuracy rows only: one predict_raster run per precision, no paired rounds
        lines = lines[:2] + [f"Load average (1/5/15 min) at start: {m['load_start']}; at end: {m['load_end']}. "
                             "Timings are single predict_raster runs per precision (no paired rounds).", ""]

    def rng(r: dict[str, Any], key: str) -> str:
        if not r.get(key):
            return "-"
        lo, hi = r.get(f"{key}_range") or (r[key], r[key])
        return f"{r[key]:.2f} ({lo:.2f}-{hi:.2f})"

    for r in result["speed"]:
        load = f"{r['load_before']} -> {r['load_after']}" + (" LOADED" if r.get("loaded") else "")
        lines.append(f"| {r['config']} | {r['threads']} | {r['kind']} | {r['images_per_s']:.3f} | "
                     f"{rng(r, 'speedup_vs_upstream_fp32')} | {rng(r, 'speedup_vs_carl_geo_fp32')} | "
                     f"{r['feature_cosine']:.5f} | {r['prepare_s']:.1f} | {load} |")
    if result.get("accuracy"):
        low = result["accuracy"][0].get("precision", "int8")
        lines += ["", f"## predict_raster, precision {low} vs fp32", "",
                  "| model and scene | pixels | class agreement | feature cosine mean / 1st pct / min | "
                  f"fp32 s | {low} s{' (incl. export)' if low == 'int8' else ''} |", "|---|---:|---:|---|---:|---:|"]
        for r in result["accuracy"]:
            agree = f"{100 * r['class_agreement']:.2f} %" if "class_agreement" in r else "-"
            fc = r.get("feature_cosine")
            cos = f"{fc['mean']:.5f} / {fc['p1']:.5f} / {fc['min']:.4f}" if fc else "-"
            first = "classes" if "classes_fp32_s" in r else "embeddings"
            lines.append(f"| {r['name']} | {r['pixels']} | {agree} | {cos} | {r[f'{first}_fp32_s']:.1f} | "
                         f"{r[f'{first}_{low}_s']:.1f} |")
        for r in result["accuracy"]:
            if "reference_scores" in r:
                a, b = r["reference_scores"]["fp32"], r["reference_scores"][low]
                what = ("scored like bench_polygons (held-out reference)" if "scene" in r else
                        "scored against the reference map (strata.tif) like `carl-geo demo`")
                lines += ["", f"{r['name']}, {what}: "
                          f"fp32 OA {a['overall_accuracy']:.4f} / mIoU {a['mean_iou']:.4f}, {low} OA "
                          f"{b['overall_accuracy']:.4f} / mIoU {b['mean_iou']:.4f}."]
    return "\n".join(lines) + "\n"


def chart(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in result["speed"] if r["threads"] == result["speed"][0]["threads"]]
    fig, ax = plt.subplots(figsize=(2 + 1.3 * len(rows), 4))
    ax.bar(range(len(rows)), [r["images_per_s"] for r in rows],
           color=["tab:green" if r["kind"] == "int8 ONNX Runtime" else "tab:gray" for r in rows])
    for i, r in enumerate(rows):
        ax.annotate(f"cos {r['feature_cosine']:.4f}", (i, r["images_per_s"]), ha="center", va="bottom", fontsize=7)
    ax.set_xticks(range(len(rows)), [f"{r['config']}\n{r['kind'].replace(' ', chr(10), 1)}" for r in rows], fontsize=7)
    ax.set_ylabel("images / s")
    ax.set_title(f"CARL 13 bands {rows[0]['size']}x{rows[0]['size']}, batch {rows[0]['batch']}, "
                 f"{rows[0]['threads']} CPU threads", fontsize=9)
    ax.margins(y=0.15)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--upstream", type=Path, default=None, help="folder holding upstream's `carl` package")
    p.add_argument("--configs", default="published")
    p.add_argument("--threads", default="2,1", help="thread counts; the first gets every candidate")
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--skip-accuracy", action="store_true")
    p.add_argument("--skip-speed", action="store_true")
    p.add_argument("--ensembles", type=Path, default=None,
                   help="folder of models bench_polygons kept (BENCH_KEEP_MODELS): int8 vs fp32 on their scenes")
    p.add_argument("--precision", default="int8", choices=["int8", "bf16"],
                   help="the precision compared with fp32 in the accuracy and ensemble runs")
    p.add_argument("--tag", default="", help="suffix of the output files")
    p.add_argument("--data", default=None, help="folder for generated rasters and trained models (default --out)")
    p.add_argument("--out", default="benchmarks/results")
    args = p.parse_args()
    int8_mod.require_int8()
    import onnxruntime

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = Path(args.data) if args.data else out
    data.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {"meta": {"machine": f"{platform.machine()}, {len(__import__('os').sched_getaffinity(0))} "
                                                  "cores", "torch": torch.__version__,
                                       "onnxruntime": onnxruntime.__version__, "load_start": uptime(),
                                       "cpu_bf16_units": cpu_has_bf16_units(), "cpu": cpu_model()}}
    result["speed"] = [] if args.skip_speed else [r for c in args.configs.split(",") for r in bench_speed(c, args)]
    if not args.skip_accuracy:
        result["accuracy"] = bench_accuracy(args, data, out)
    if args.ensembles is not None:
        result["accuracy"] = result.get("accuracy", []) + bench_ensembles(args.ensembles, data, out, args.precision)
    result["meta"]["load_end"] = uptime()
    stem = f"bench_int8{'_' + args.tag if args.tag else ''}"
    (out / f"{stem}.json").write_text(json.dumps(result, indent=1))
    (out / f"{stem}.md").write_text(markdown(result))
    if result["speed"]:
        chart(result, out / f"{stem}.png")
    print(markdown(result))


if __name__ == "__main__":
    main()
