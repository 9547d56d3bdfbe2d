"""``carl-geo geobench``: evaluate a CARL checkpoint on GEO-Bench in one command.

Examples::

    # upstream's protocol (linear probe, image size 128, per-image normalisation) on the five tasks
    # with a published CARL number; upstream runs once unseeded, here 3 seeds give mean and std
    carl-geo geobench --root ~/geobench --checkpoint ssl_checkpoint_carl.ckpt --out results/carl
    # upstream's "no SSL checkpoint" baseline: timm's EVA-02 trunk + DINOv2-initialised spectral blocks
    carl-geo geobench --root ~/geobench --checkpoint random --out results/no_ssl
    # the random-init floor on m-eurosat with 10 % of the training data
    carl-geo geobench --root ~/geobench --checkpoint random --spatial-init random --spectral-init random \\
        --tasks m-eurosat --partition 0.10x --out results/rand
    # a stronger segmentation decoder than the linear probe: UperNet (not upstream's ViT-Adapter)
    carl-geo geobench --root ~/geobench --checkpoint ssl_checkpoint_carl.ckpt --tasks m-SA-crop-type \\
        --head upernet --out results/upernet
    # smoke test on a synthetic benchmark (CPU, seconds)
    carl-geo geobench --synthetic --root /tmp/gb --tasks all --checkpoint random --config tiny \\
        --epochs 2 --seeds 1 --image-size 0 --out /tmp/gb-results

Finished runs are skipped when the command is repeated with the same ``--out``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from carl_geo.evaluation.geobench.settings import GeoBenchSettings
from carl_geo.settings_options import add_options, from_options

#: Files the runner writes at the top of ``--out`` (besides ``runs/`` and Lightning logs).
RESULT_FILES = ("settings.json", "results.csv", "results.json", "results.md", "results.png", "runs.csv")


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``geobench`` sub-command (its options: the fields of :class:`GeoBenchSettings`)."""
    p = subparsers.add_parser(
        "geobench", help="evaluate a CARL checkpoint on GEO-Bench (linear probe, fine-tuning or k-NN)",
        description="Evaluate a CARL checkpoint on GEO-Bench tasks read from a local folder in GEO-Bench's "
                    "published format. Writes results.csv/.json/.md/.png (measured beside the CARL paper's "
                    "numbers) and one record + Lightning log per run to --out; finished runs are skipped.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--root", required=True, type=Path,
                   help="GEO-Bench folder (containing classification_v1.0/, segmentation_v1.0/ or task folders)")
    p.add_argument("--checkpoint", required=True,
                   help="backbone weights (CARL-SSL .ckpt, carl_geo .pt/.safetensors) or 'random' (no SSL checkpoint: "
                        "encoders from --spatial-init / --spectral-init)")
    p.add_argument("--out", required=True, type=Path, help="output folder (reuse it to resume)")
    add_options(GeoBenchSettings, {None: p})
    p.add_argument("--synthetic", action="store_true",
                   help="first write a tiny synthetic benchmark into --root (if it has no tasks yet)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    import logging

    from carl_geo.evaluation.geobench.options import RANDOM
    from carl_geo.io.output_paths import check_outputs, reads_of

    if args.out.is_dir():  # results are resumed in place, but never written over the checkpoint
        check_outputs([("result file", args.out / name) for name in RESULT_FILES],
                      reads_of(files=[("checkpoint", None if args.checkpoint == RANDOM else args.checkpoint)]))

    from carl_geo.datasets.geobench.reader import find_tasks
    from carl_geo.evaluation.geobench.runner import run_geobench

    if args.synthetic and (not args.root.exists() or not find_tasks(args.root)):
        from carl_geo.datasets.geobench.synthetic import write_synthetic_benchmark

        tasks = write_synthetic_benchmark(args.root)
        print(f"wrote synthetic GEO-Bench tasks {', '.join(tasks)} to {args.root}")
    settings = from_options(GeoBenchSettings, args, root=args.root, checkpoint=args.checkpoint, out=args.out,
                            progress=not args.quiet)
    for name in ("lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)
    from tqdm.auto import tqdm

    report = run_geobench(settings, log=tqdm.write)
    if report.files.get("markdown"):
        print(report.files["markdown"].read_text())
        print("written: " + ", ".join(str(p) for p in report.files.values()))
    print(f"{len(report.ran)} run(s) done, {len(report.skipped)} skipped, {report.wall_s:.1f} s")
    return 0
