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
import os
from pathlib import Path
from typing import Any

from carl_geo.evaluation.geobench.options import AUTO, BAND_ORDERS, MODES, NORMALIZATIONS
from carl_geo.models.names import CONFIG_NAMES, HEAD_NAMES


#: Files the runner writes at the top of ``--out`` (besides ``runs/`` and Lightning logs).
RESULT_FILES = ("settings.json", "results.csv", "results.json", "results.md", "results.png", "runs.csv")


def _tasks(value: str) -> list[str]:
    names = [v.strip() for v in value.split(",") if v.strip()]
    if not names:
        raise argparse.ArgumentTypeError("--tasks needs task names separated by commas (or 'all')")
    return names


def _devices(value: str) -> int | str:
    return int(value) if value.strip().lstrip("-").isdigit() else value


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``geobench`` sub-command."""
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
    p.add_argument("--spatial-init", default=AUTO,
                   help="with --checkpoint random: spatial trunk weights: 'timm' (EVA-02 MIM in22k, as upstream; "
                        "downloaded once by timm), a local timm weights file, 'random', or 'auto' (timm for the "
                        "published config, random for tiny)")
    p.add_argument("--spectral-init", default=AUTO,
                   help="with --checkpoint random: spectral encoder weights: 'timm' (first blocks of DINOv2, as "
                        "upstream), a local timm DINOv2 weights file, 'random', or 'auto' (as --spatial-init)")
    p.add_argument("--out", required=True, type=Path, help="output folder (reuse it to resume)")
    p.add_argument("--tasks", type=_tasks, default=None,
                   help="comma-separated task names, or 'all' (default: the tasks with a published CARL number: "
                        "m-bigearthnet, m-eurosat, m-forestnet, m-SA-crop-type, m-cashew-plantation)")
    p.add_argument("--mode", default="linear", choices=MODES,
                   help="linear: frozen backbone + linear head (paper); finetune; scratch; knn (classification)")
    p.add_argument("--seeds", type=int, default=3,
                   help="number of seeds (mean and std are reported; upstream ran once, unseeded)")
    p.add_argument("--first-seed", type=int, default=0)
    p.add_argument("--config", default="published", choices=CONFIG_NAMES,
                   help="backbone size; with a checkpoint the config stored in it is used unless 'tiny' is forced")
    p.add_argument("--epochs", type=int, default=50)
    p.add_argument("--partition", default="default", help="'default' or a reduced-train partition, e.g. 0.01x_train")
    p.add_argument("--max-samples", type=int, default=None, help="use only the first N samples per split (smoke test)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--weight-decay", type=float, default=0.0, help="AdamW weight decay (0 = upstream's Adam)")
    p.add_argument("--backbone-lr-factor", type=float, default=0.1, help="backbone lr = lr x this (finetune)")
    p.add_argument("--image-size", type=int, default=128, help="resize images to this side (upstream 128; 0 = native)")
    p.add_argument("--normalization", default="image", choices=NORMALIZATIONS,
                   help="image: one mean/std per image (upstream); band: GEO-Bench per-band statistics")
    p.add_argument("--band-order", default="stored", choices=BAND_ORDERS,
                   help="corrected: fix the wrong stored wavelengths of m-eurosat/m-brick-kiln (not comparable "
                        "to the paper)")
    p.add_argument("--head", default="linear", choices=HEAD_NAMES,
                   help="segmentation head: linear (1x1 conv, upstream's probe), progressive, or upernet (UperNet on "
                        "a simple feature pyramid; not upstream's ViT-Adapter + UperNet)")
    p.add_argument("--head-width", type=int, default=None,
                   help="channels of the progressive / upernet head (default: 64 / 256)")
    p.add_argument("--val-every", type=int, default=5, help="validate (and select the model) every N epochs")
    p.add_argument("--num-workers", type=int, default=min(4, os.cpu_count() or 1), help="data loader processes")
    p.add_argument("--accelerator", default="auto", help="Lightning accelerator (auto, cpu, gpu)")
    p.add_argument("--devices", type=_devices, default=1,
                   help="devices per run; >1 trains each run with Lightning's DDP launch")
    p.add_argument("--strategy", default="auto", help="Lightning strategy (e.g. ddp)")
    p.add_argument("--precision", default=None, help="Lightning precision (default: bf16-mixed on GPU, 32-true on CPU)")
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

    from carl_geo.evaluation.geobench.reader import find_tasks
    from carl_geo.evaluation.geobench.runner import GeoBenchSettings, run_geobench

    if args.synthetic and (not args.root.exists() or not find_tasks(args.root)):
        from carl_geo.evaluation.geobench.synthetic import write_synthetic_benchmark

        tasks = write_synthetic_benchmark(args.root)
        print(f"wrote synthetic GEO-Bench tasks {', '.join(tasks)} to {args.root}")
    settings = GeoBenchSettings(
        root=args.root, checkpoint=args.checkpoint, out=args.out, tasks=args.tasks, mode=args.mode,
        seeds=args.seeds, first_seed=args.first_seed, config=args.config, epochs=args.epochs,
        batch_size=args.batch_size, lr=args.lr, weight_decay=args.weight_decay,
        backbone_lr_factor=args.backbone_lr_factor, image_size=args.image_size, normalization=args.normalization,
        band_order=args.band_order, head=args.head, head_width=args.head_width, spatial_init=args.spatial_init,
        spectral_init=args.spectral_init, partition=args.partition, max_samples=args.max_samples,
        val_every=args.val_every, num_workers=args.num_workers, accelerator=args.accelerator, devices=args.devices,
        strategy=args.strategy, precision=args.precision, progress=not args.quiet,
    )
    for name in ("lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)
    from tqdm.auto import tqdm

    report = run_geobench(settings, log=tqdm.write)
    if report.files.get("markdown"):
        print(report.files["markdown"].read_text())
        print("written: " + ", ".join(str(p) for p in report.files.values()))
    print(f"{len(report.ran)} run(s) done, {len(report.skipped)} skipped, {report.wall_s:.1f} s")
    return 0
