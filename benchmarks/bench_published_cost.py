"""What polygon training costs with the published CARL-SSL backbone on a CPU (issue #27).

The published checkpoint (1.33 GB) cannot be downloaded on the offline benchmark machine, so a backbone of the
published architecture with random weights stands in: the number measured is the cost (wall time, steps, peak
memory), not the accuracy. ``carl-geo train --weights`` freezes the backbone and trains CARL's head in the time
budget, then computes the pixel features (the backbone over the labelled window) and fits the heads; the CPU
default budget (8 min for this window) holds for the whole run.

    python benchmarks/bench_published_cost.py [--scene s2] [--out benchmarks/results]

Writes ``bench_published_cost.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scene", default="s2", choices=("s2", "nc"))
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = p.parse_args()

    import torch

    from bench_polygons import scene_spec
    from carl_geo.models import CARL, make_bundle, published_config, save_bundle
    from carl_geo.polygon_training import train_from_polygons

    load_start = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        spec = scene_spec(args.scene, work)
        torch.manual_seed(0)
        weights = save_bundle(make_bundle(CARL(published_config()).eval()), work / "published_random.pt")
        lines: list[str] = []
        t = time.perf_counter()
        res = train_from_polygons(spec["image"], spec["polygons"], spec["label_field"], work / "m.pt", weights=weights,
                                  device="cpu", log=lambda m: lines.append(f"{time.perf_counter() - t:7.1f} s  {m}"))
        wall = time.perf_counter() - t
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    head_line = next((ln for ln in lines if "candidate rf:" in ln), "")
    loop_end = float(head_line.split(" s ")[0]) if head_line else float("nan")
    out = {"date": time.strftime("%Y-%m-%d"), "machine": f"{platform.processor() or platform.machine()}, "
           f"{os.cpu_count()} cores", "load_start": round(load_start, 1), "load_end": round(os.getloadavg()[0], 1),
           "scene": args.scene, "wall_s": round(wall, 1), "steps": res.report["steps"],
           "stop_reason": res.report["stop_reason"], "until_first_candidate_s": loop_end,
           "kept": res.report["kept"], "peak_rss_mib": round(rss), "log": lines}
    dest = Path(args.out)
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "bench_published_cost.json").write_text(json.dumps(out, indent=1))
    md = [f"# Polygon training with the published CARL-SSL architecture on a CPU ({out['date']}, {out['machine']})",
          "", f"Load average at start / end: {out['load_start']} / {out['load_end']}. Random weights in the published "
          "architecture (the cost, not the accuracy, is measured); `train_from_polygons(weights=...)` defaults "
          "(frozen backbone; the CPU default budget covers the whole run: CARL's head trains until the run's end "
          "less the pixel features' and heads' time, measured before the loop and scaled by how much slower the "
          "validations get).", "",
          "| scene | wall s | CARL head steps | stop | pixel features + heads start at s | peak RSS MiB |",
          "|---|---|---|---|---|---|",
          f"| {args.scene} | {out['wall_s']:.0f} | {out['steps']} | {out['stop_reason']} | "
          f"{out['until_first_candidate_s']:.0f} | {out['peak_rss_mib']} |", "", "Log:", "", "```",
          *lines, "```"]
    (dest / "bench_published_cost.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
