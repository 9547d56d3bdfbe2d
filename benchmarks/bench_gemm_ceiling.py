"""How fast int8 can be on this CPU: the published CARL's matrix products in fp32 and in int8, shape by shape.

Issue #31 asks int8 for >= 3x upstream's fp32 speed. int8 only speeds up the matrix products with a weight
(``nn.Linear``), and only by as much as the CPU's int8 products beat its fp32 ones. This benchmark measures both
bounds on the machine it runs on:

1. one fp32 forward of the published CARL (13 bands, ``--batch`` x ``--size`` px) with every ``nn.Linear`` call
   recorded as (rows M, in K, out N): the matrix products the model really runs (the CPU chunking included);
2. each distinct (M, K, N) timed in paired rounds (``benchmarks/timing.py``): torch fp32 (what carl_geo runs),
   ONNX Runtime fp32, and ONNX Runtime int8 quantised as ``precision="int8"`` quantises (``quantize_dynamic``,
   per-channel int8 weights, 7 bits where the CPU lacks VNNI; the activations' dynamic quantisation included);
3. the whole forward of carl_geo fp32 (and upstream's, with ``--upstream``) in paired rounds;
4. the ceilings: int8 forward time >= the int8 products alone ("everything else free"), and the forward with every
   product swapped for its int8 time ("the rest as fp32").

    python benchmarks/bench_gemm_ceiling.py --upstream /path/to/CARL --out benchmarks/results
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import statistics
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import torch

import carl_geo
from carl_geo.inference.int8 import SPIN, Int8Model, needs_reduced_range, quantize_options

sys.path.insert(0, str(Path(__file__).resolve().parent))
from timing import cpu_model, load_average, time_paired  # noqa: E402  (benchmarks/timing.py)


def linear_calls(model: torch.nn.Module, x: torch.Tensor, wl: torch.Tensor, repeats: int = 3) -> tuple[dict, float]:
    """Every ``nn.Linear`` call of a forward, timed inside the model.

    Returns ``{(M, K, N, bias): (calls per forward, median seconds per call)}`` and the median seconds of the
    whole (hooked) forward, over ``repeats`` forwards after one warm-up."""
    per_call: dict = defaultdict(list)
    counts: Counter = Counter()
    starts: list[float] = []

    def before(_mod: torch.nn.Linear, _args: tuple) -> None:
        starts.append(time.perf_counter())

    def after(mod: torch.nn.Linear, args: tuple, _out: torch.Tensor) -> None:
        rows = args[0].numel() // args[0].shape[-1]
        per_call[(rows, mod.in_features, mod.out_features, mod.bias is not None)].append(
            time.perf_counter() - starts.pop())

    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    handles = [h for m in linears for h in (m.register_forward_pre_hook(before), m.register_forward_hook(after))]
    forwards = []
    with torch.inference_mode():
        for i in range(repeats + 1):
            per_call.clear()
            start = time.perf_counter()
            model(x, wl)
            forwards.append(time.perf_counter() - start)
            if i == 0:
                counts = Counter({k: len(v) for k, v in per_call.items()})
                samples: dict = defaultdict(list)
            else:
                for k, v in per_call.items():
                    samples[k].extend(v)
    for h in handles:
        h.remove()
    return ({k: (counts[k], statistics.median(samples[k])) for k in counts},
            statistics.median(forwards[1:]))


def onnx_linear(m: int, k: int, n: int, bias: bool, folder: Path, threads: int) -> dict:
    """ONNX Runtime sessions of y = x W (+ b) for (m, k) inputs: fp32 and int8 (as carl_geo's int8 path)."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper
    from onnxruntime.quantization import quantize_dynamic

    rng = np.random.default_rng(0)
    w = (rng.standard_normal((k, n)) * 0.02).astype(np.float32)
    nodes = [helper.make_node("MatMul", ["x", "w"], ["y" if not bias else "xw"])]
    inits = [numpy_helper.from_array(w, "w")]
    if bias:
        nodes.append(helper.make_node("Add", ["xw", "b"], ["y"]))
        inits.append(numpy_helper.from_array(np.zeros(n, np.float32), "b"))
    graph = helper.make_graph(nodes, "linear", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [m, k])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [m, n])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    fp32, int8 = folder / f"{m}_{k}_{n}.onnx", folder / f"{m}_{k}_{n}_int8.onnx"
    onnx.save(model, fp32)
    quantize_dynamic(str(fp32), str(int8), **quantize_options())  # as precision="int8" quantises
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    if not SPIN:  # as carl_geo's int8 sessions (spinning workers would also slow the torch product timed next)
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return {kind: ort.InferenceSession(str(p), opts, providers=["CPUExecutionProvider"])
            for kind, p in (("ort fp32", fp32), ("ort int8", int8))}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="published")
    p.add_argument("--bands", type=int, default=13)
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--upstream", type=Path, default=None, help="folder holding upstream's `carl` package")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    config = carl_geo.get_config(args.config)
    model = carl_geo.CARL(config).eval()
    x = torch.randn(args.batch, args.bands, args.size, args.size)
    wl = torch.linspace(0.44, 2.2, args.bands)
    load_start = load_average()

    calls, hooked_forward = linear_calls(model, x, wl)
    print(f"{sum(c for c, _ in calls.values())} linear calls, {len(calls)} shapes, "
          f"{sum(c * m * k * n for (m, k, n, _), (c, _) in calls.items()) / 1e9:.1f} GMAC")
    shapes = []
    with tempfile.TemporaryDirectory() as tmp:
        for (m, k, n, bias), (count, in_model) in sorted(calls.items(), key=lambda kv: -kv[1][0] * kv[1][1]):
            sessions = onnx_linear(m, k, n, bias, Path(tmp), args.threads)
            xt = torch.randn(m, k)
            lin = torch.nn.Linear(k, n, bias=bias).eval()
            xn = xt.numpy()

            def torch_fp32(lin=lin, xt=xt) -> torch.Tensor:
                with torch.inference_mode():
                    return lin(xt)

            fns = {"torch fp32": torch_fp32}
            fns.update({kind: (lambda s=s, xn=xn: s.run(None, {"x": xn})) for kind, s in sessions.items()})
            t = time_paired(fns, rounds=args.rounds, block_seconds=0.3)
            ratio = t.speedup("ort int8", "torch fp32")
            row = {"rows": m, "in": k, "out": n, "calls": count, "gmac": count * m * k * n / 1e9,
                   "in_model_seconds": in_model, "in_model_int8_seconds": in_model / ratio.median,
                   "seconds": {kind: t.median_seconds(kind) for kind in fns},
                   "int8_vs_torch_fp32": ratio.to_dict(),
                   "int8_vs_ort_fp32": t.speedup("ort int8", "ort fp32").to_dict(),
                   "load": t.load_text()}
            row["gmac_per_s"] = {kind: m * k * n / s / 1e9 for kind, s in row["seconds"].items()}
            row["gmac_per_s"]["in model"] = m * k * n / in_model / 1e9
            shapes.append(row)
            print(f"{m:6d} x {k:4d} -> {n:4d}  x{count:3d}  fp32 {row['gmac_per_s']['torch fp32']:6.1f} GMAC/s "
                  f"(in the model {row['gmac_per_s']['in model']:6.1f})  int8 {row['gmac_per_s']['ort int8']:6.1f} "
                  f"GMAC/s  int8/fp32 {ratio}")

    def forward() -> torch.Tensor:
        with torch.inference_mode():
            return model(x, wl)

    fns = {"carl_geo fp32": forward}
    if args.upstream is not None:
        from bench_vs_upstream import copy_weights, upstream_model

        theirs = upstream_model(args.upstream, config).eval()
        copy_weights(model, theirs)

        def upstream() -> torch.Tensor:
            with torch.inference_mode():
                return theirs(x, wl.expand(x.shape[0], -1))[0]

        fns["upstream fp32"] = upstream
    int8 = Int8Model(model, threads=args.threads)
    int8(x, wl)  # export + quantisation, outside the clock
    fns["carl_geo int8 (precision=\"int8\")"] = lambda: int8(x, wl)
    whole = time_paired(fns, rounds=args.rounds, block_seconds=3.0)
    # In-model seconds of the products, fp32 and (each shape's measured int8 / fp32 ratio applied) int8; the rest of
    # the forward (attention, norms, GELU, copies) is the hooked forward less its products.
    linear_fp32 = sum(r["calls"] * r["in_model_seconds"] for r in shapes)
    linear_int8 = sum(r["calls"] * r["in_model_int8_seconds"] for r in shapes)
    rest = max(hooked_forward - linear_fp32, 0.0)
    bounds = {"int8 products alone (everything else free)": linear_int8,
              "int8 products + the rest at its fp32 cost": linear_int8 + rest}
    result = {
        "machine": platform.machine(), "cpu": cpu_model(), "torch": torch.__version__, "threads": args.threads,
        "config": args.config, "bands": args.bands, "batch": args.batch, "size": args.size,
        "reduced_range_int8": needs_reduced_range(),
        "load_start": load_start, "load_end": load_average(), "forward": whole.to_dict(),
        "forward_seconds": {kind: whole.median_seconds(kind) for kind in fns},
        "hooked_forward_seconds": hooked_forward, "linear_fp32_seconds": linear_fp32,
        "linear_int8_seconds": linear_int8, "rest_seconds": rest, "shapes": shapes,
        "bounds_vs_carl_geo_fp32": {k: hooked_forward / v for k, v in bounds.items()},
        "int8_vs_carl_geo_fp32": whole.speedup(list(fns)[-1], "carl_geo fp32").to_dict(),
    }
    if args.upstream is not None:
        ours_vs_up = whole.speedup("carl_geo fp32", "upstream fp32")
        result["carl_geo_fp32_vs_upstream"] = ours_vs_up.to_dict()
        result["int8_vs_upstream"] = whole.speedup(list(fns)[-1], "upstream fp32").to_dict()
        result["bounds_vs_upstream"] = {k: ours_vs_up.median * v for k, v in result["bounds_vs_carl_geo_fp32"].items()}
    args.out.mkdir(parents=True, exist_ok=True)
    tag = f"bench_gemm_ceiling_{args.config}_{args.batch}x{args.size}"
    (args.out / f"{tag}.json").write_text(json.dumps(result, indent=1))
    (args.out / f"{tag}.md").write_text(markdown(result))
    print(markdown(result))


def markdown(r: dict) -> str:
    lines = [f"# int8 ceiling: {r['config']} CARL, {r['bands']} bands, {r['batch']} x {r['size']} px, "
             f"{r['threads']} threads",
             "",
             f"{r['cpu']}, torch {r['torch']}; int8 weights {'7' if r['reduced_range_int8'] else '8'} bits "
             f"(as `precision=\"int8\"` on this CPU). Load {r['load_start']} -> {r['load_end']}. Products timed "
             "alone in paired rounds (benchmarks/timing.py; ratio = median of the per-round ratios, range), and "
             "inside the model (median of 3 forwards, each call timed).",
             "",
             "| rows x in -> out | calls | GMAC | torch fp32 GMAC/s (inside the model) | ONNX Runtime fp32 GMAC/s | "
             "ONNX Runtime int8 GMAC/s | int8 / torch fp32 (range) |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for s in r["shapes"]:
        g, q = s["gmac_per_s"], s["int8_vs_torch_fp32"]
        lines.append(f"| {s['rows']} x {s['in']} -> {s['out']} | {s['calls']} | {s['gmac']:.2f} | "
                     f"{g['torch fp32']:.1f} ({g['in model']:.1f}) | {g['ort fp32']:.1f} | {g['ort int8']:.1f} | "
                     f"{q['median']:.2f} ({q['min']:.2f}-{q['max']:.2f}) |")
    fwd = r["forward_seconds"]
    lines += ["",
              f"One fp32 forward with every product timed: {r['hooked_forward_seconds']:.3f} s, of which the products "
              f"with a weight {r['linear_fp32_seconds']:.3f} s "
              f"({100 * r['linear_fp32_seconds'] / r['hooked_forward_seconds']:.0f} %); with each product at its "
              f"int8 speed-up: {r['linear_int8_seconds']:.3f} s; the rest (attention, norms, GELU, copies) "
              f"{r['rest_seconds']:.3f} s.", "",
              "| forward (paired rounds, whole model) | seconds | x carl_geo fp32 | x upstream fp32 |",
              "|---|---:|---:|---:|"]
    up = r.get("carl_geo_fp32_vs_upstream")
    for kind, sec in fwd.items():
        vs_ours = {"carl_geo fp32": "1.00"}.get(kind, "")
        vs_up = ""
        if kind == "carl_geo fp32" and up:
            vs_up = f"{up['median']:.2f} ({up['min']:.2f}-{up['max']:.2f})"
        elif kind == "upstream fp32":
            vs_up = "1.00"
        elif kind.startswith("carl_geo int8"):
            q = r["int8_vs_carl_geo_fp32"]
            vs_ours = f"{q['median']:.2f} ({q['min']:.2f}-{q['max']:.2f})"
            if "int8_vs_upstream" in r:
                q = r["int8_vs_upstream"]
                vs_up = f"{q['median']:.2f} ({q['min']:.2f}-{q['max']:.2f})"
        lines.append(f"| {kind} | {sec:.3f} | {vs_ours} | {vs_up} |")
    for k, v in r["bounds_vs_carl_geo_fp32"].items():
        vs_up = f"{r['bounds_vs_upstream'][k]:.2f}" if "bounds_vs_upstream" in r else ""
        lines.append(f"| bound: {k} | | {v:.2f} | {vs_up} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
