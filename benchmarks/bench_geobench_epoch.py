"""Time of one GEO-Bench linear-probe epoch (13 bands, 120 x 120 pixels, published config) on synthetic data.

Runs the GEO-Bench protocol of ``carl-geo geobench`` (``GeoBenchClassificationTask``, mode
``linear``: frozen backbone, global average pool + linear layer; images resized to 128 x 128;
batch 16; bf16-mixed on a GPU) with Lightning for ``--warmup + --steps`` training steps and
``--val-steps`` validation steps, times the steps after the warm-up (CUDA-synchronised), and
extrapolates to one epoch of ``--train-samples`` training and ``--val-samples`` validation samples
(defaults: m-bigearthnet, 20 000 / 1 000; the data loader is assumed to keep up). The backbone is
randomly initialised: the weights do not change the speed.

Data: random in-memory tensors by default (model cost only); ``--hdf5 DIR`` writes a synthetic
task in GEO-Bench's on-disk format there and reads it through ``GeoBenchDataModule`` (adds HDF5
decoding with ``--num-workers`` loader processes).

Examples::

    python benchmarks/bench_geobench_epoch.py                                  # GPU, published config
    python benchmarks/bench_geobench_epoch.py --device cpu --steps 3 --warmup 1 --val-steps 2
    python benchmarks/bench_geobench_epoch.py --hdf5 /tmp/gb13 --num-workers 8 --out bench_geobench_epoch.json
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time
import warnings
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import Callback, LightningDataModule, Trainer, seed_everything
from torch.utils.data import DataLoader, Dataset

from carl_geo.trainers.geobench import GeoBenchClassificationTask
from carl_geo.sensors import get_sensor
from carl_geo.transforms import standardize_image

S2_13 = tuple(get_sensor("sentinel2_l1c").band_names)


class RandomScenes(Dataset):
    """``n`` random (C, size, size) standardised images with S2 wavelengths and multi-hot labels."""

    def __init__(self, n: int, bands: int, size: int, num_classes: int) -> None:
        g = torch.Generator().manual_seed(0)
        self.images = standardize_image(torch.rand(min(n, 64), bands, size, size, generator=g) * 3000)
        self.labels = (torch.rand(min(n, 64), num_classes, generator=g) < 0.2).long()
        self.wavelengths = torch.tensor(get_sensor("sentinel2_l1c").wavelengths[:bands], dtype=torch.float32)
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        j = i % len(self.images)
        return {"image": self.images[j], "wavelengths": self.wavelengths, "label": self.labels[j]}


class RandomData(LightningDataModule):
    def __init__(self, n: int, bands: int, size: int, num_classes: int, batch: int) -> None:
        super().__init__()
        self.ds = RandomScenes(n, bands, size, num_classes)
        self.batch = batch

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.ds, batch_size=self.batch, shuffle=True, drop_last=True)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.ds, batch_size=self.batch)


class StepTimer(Callback):
    """Wall time of each training / validation batch (synchronised on CUDA), warm-up steps skipped."""

    def __init__(self, warmup: int) -> None:
        self.warmup = warmup
        self.train: list[float] = []
        self.val: list[float] = []
        self._t = 0.0
        self._seen = 0

    def _now(self, module: Any) -> float:
        if module.device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter()

    def on_train_batch_start(self, trainer: Trainer, module: Any, batch: Any, idx: int) -> None:
        self._t = self._now(module)

    def on_train_batch_end(self, trainer: Trainer, module: Any, out: Any, batch: Any, idx: int) -> None:
        dt = self._now(module) - self._t
        self._seen += 1
        if self._seen > self.warmup:
            self.train.append(dt)

    def on_validation_batch_start(self, trainer: Trainer, module: Any, batch: Any, idx: int, dl: int = 0) -> None:
        self._t = self._now(module)

    def on_validation_batch_end(self, trainer: Trainer, module: Any, out: Any, batch: Any, idx: int,
                                dl: int = 0) -> None:
        if idx >= 1 or self.warmup == 0:  # the first validation batch pays for mode switches
            self.val.append(self._now(module) - self._t)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=("cuda", "cpu"))
    p.add_argument("--config", default="published", choices=("published", "tiny"))
    p.add_argument("--bands", type=int, default=13)
    p.add_argument("--size", type=int, default=120, help="stored image side")
    p.add_argument("--image-size", type=int, default=128, help="resized side fed to CARL (upstream 128)")
    p.add_argument("--num-classes", type=int, default=19)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--steps", type=int, default=50, help="timed training steps")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--val-steps", type=int, default=20)
    p.add_argument("--train-samples", type=int, default=20000, help="epoch size to extrapolate to (m-bigearthnet)")
    p.add_argument("--val-samples", type=int, default=1000)
    p.add_argument("--precision", default=None, help="default: bf16-mixed on cuda, 32-true on cpu")
    p.add_argument("--hdf5", type=Path, default=None, help="write and read a synthetic GEO-Bench task here")
    p.add_argument("--num-workers", type=int, default=4)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--out", type=Path, default=None, help="write the result as JSON")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    precision = args.precision or ("bf16-mixed" if args.device == "cuda" else "32-true")
    seed_everything(0, verbose=False)
    n_batches = args.warmup + args.steps
    if args.hdf5 is not None:
        from carl_geo.evaluation.geobench import GeoBenchDataModule, load_task
        from carl_geo.evaluation.geobench.synthetic import write_synthetic_task

        n = n_batches * args.batch
        folder = args.hdf5 / "bench" / "m-bench13"
        if not (folder / "task_specs.pkl").is_file():
            write_synthetic_task(folder, "multilabel", ["water", "vegetation", "soil", "built-up"], n_train=n,
                                 n_valid=max(args.val_steps, 1) * args.batch, n_test=1, size=args.size,
                                 bands=S2_13[: args.bands])
        task_info = load_task(folder)
        data: LightningDataModule = GeoBenchDataModule(task_info, batch_size=args.batch, num_workers=args.num_workers)
        num_classes = task_info.num_classes
    else:
        num_classes = args.num_classes
        data = RandomData(n_batches * args.batch, args.bands, args.size, num_classes, args.batch)
    task = GeoBenchClassificationTask(num_classes, multilabel=True, config=args.config, mode="linear",
                                      image_size=args.image_size)
    timer = StepTimer(args.warmup)
    trainer = Trainer(max_epochs=1, accelerator="gpu" if args.device == "cuda" else "cpu", devices=1,
                      precision=precision, logger=False, enable_checkpointing=False, enable_model_summary=False,
                      enable_progress_bar=False, num_sanity_val_steps=0, limit_train_batches=n_batches,
                      limit_val_batches=args.val_steps + 1 if args.val_steps else 0, callbacks=[timer])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t0 = time.perf_counter()
        trainer.fit(task, datamodule=data)
        total = time.perf_counter() - t0
    train_step = sum(timer.train) / max(1, len(timer.train))
    val_step = sum(timer.val) / len(timer.val) if timer.val else float("nan")
    steps_per_epoch = args.train_samples // args.batch
    val_batches = math.ceil(args.val_samples / args.batch)
    epoch = steps_per_epoch * train_step + (val_batches * val_step if timer.val else 0.0)
    if args.device == "cuda":
        device = torch.cuda.get_device_name(0)
    else:
        device = f"cpu ({platform.machine()}, {torch.get_num_threads()} threads)"
    result = {
        "device": device, "config": args.config, "bands": args.bands, "size": args.size, "image_size": args.image_size,
        "batch": args.batch, "precision": precision, "data": "hdf5" if args.hdf5 else "memory",
        "timed_train_steps": len(timer.train), "s_per_train_step": round(train_step, 5),
        "train_images_per_s": round(args.batch / train_step, 2), "timed_val_steps": len(timer.val),
        "s_per_val_step": round(val_step, 5), "train_samples": args.train_samples, "val_samples": args.val_samples,
        "est_train_epoch_s": round(steps_per_epoch * train_step, 2), "est_epoch_with_val_s": round(epoch, 2),
        "wall_s": round(total, 2), "torch": torch.__version__,
        "peak_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if args.device == "cuda" else None,
    }
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
