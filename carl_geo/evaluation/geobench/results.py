"""Result tables of a GEO-Bench evaluation: per-run records -> mean/std per task, CSV, JSON,
markdown (measured beside the CARL paper's numbers) and a PNG chart.

A run record (one JSON file per task/partition/mode/seed, written by the runner) holds at least
``task``, ``kind``, ``partition``, ``mode``, ``seed``, ``metric`` (primary metric name) and
``score`` (primary test metric in percent).
"""

from __future__ import annotations

import csv
import json
import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: Where the upstream numbers come from.
SOURCE_README = "github IMSY-DKFZ/CARL README, 'Model performance' table (commit 426cf54)"
SOURCE_PAPER = ("CARL paper (Baumann et al., ICLR 2026, arXiv 2504.19223), remote-sensing benchmark listing "
                "(as quoted in carl_geo issue #17; not in upstream's README)")

#: The protocol behind every upstream GEO-Bench number (``main_cls.py`` / ``main_seg.py`` with
#: ``configs/config_cls.yaml`` / ``config_seg.yaml`` of upstream commit 426cf54).
UPSTREAM_PROTOCOL: dict[str, str] = {
    "evaluation": "linear probe: frozen CARL-SSL backbone (student); global average pool + linear layer "
                  "(classification) or 1x1 conv upsampled bilinearly to the label size (segmentation)",
    "image size": "128 x 128 (bilinear resize; segmentation training: random resized crop 0.8-1.0 of image "
                  "and mask)",
    "normalisation": "per image: one scalar mean/std over all bands, (x - mean) / (std + 1e-6)",
    "band set": "every band GEO-Bench lists with a wavelength, in the stored order and with the stored "
                "wavelengths (m-eurosat's as stored)",
    "training": "Adam lr 1e-3, cosine over 50 epochs, batch 16, random flips, bf16-mixed",
    "selection": "validation every 5 epochs; the best epoch by the task metric is tested once",
    "runs": "one run, unseeded (no mean over seeds)",
}


@dataclass(frozen=True)
class PaperResult:
    """One published CARL number on a GEO-Bench task.

    Attributes:
        task: GEO-Bench task name.
        metric: carl_geo's name of the metric (``Accuracy``, ``MicroAP``, ``mIoU``).
        value: score in percent.
        protocol: evaluation protocol (the details are :data:`UPSTREAM_PROTOCOL`).
        source: where the number is published.
    """

    task: str
    metric: str
    value: float
    protocol: str
    source: str


#: CARL's published GEO-Bench numbers (CARL-SSL backbone, linear probe, default partition).
PAPER_RESULTS: dict[str, PaperResult] = {r.task: r for r in (
    PaperResult("m-bigearthnet", "MicroAP", 69.0, "linear probe", SOURCE_README),
    PaperResult("m-eurosat", "Accuracy", 84.4, "linear probe", SOURCE_README),
    PaperResult("m-forestnet", "Accuracy", 47.0, "linear probe", SOURCE_README),
    PaperResult("m-SA-crop-type", "mIoU", 26.5, "linear probe", SOURCE_README),
    PaperResult("m-cashew-plantation", "mIoU", 18.9, "linear probe", SOURCE_PAPER),
)}
#: Tasks with a published number (the default task list).
PAPER_TASKS = tuple(PAPER_RESULTS)
#: Headline test metric per task kind (``test_<name>`` as logged by the tasks): upstream's metrics
#: (accuracy; micro average precision for multi-label m-bigearthnet; mean of all K per-class IoUs).
PRIMARY_METRIC = {"classification": "Accuracy", "multilabel": "MicroAP", "segmentation": "mIoU"}
#: Further test metrics summarised beside the primary one (mean over seeds).
EXTRA_METRICS = {"multilabel": ("F1",)}
#: Settings of a run that must equal upstream's for its score to sit beside the published number.
UPSTREAM_SETTINGS = {"image_size": 128, "normalization": "image", "band_order": "stored", "head": "linear"}
SUMMARY_FIELDS = ("task", "kind", "metric", "partition", "mode", "n_seeds", "mean", "std", "min", "max",
                  "paper", "delta", "scores", "extra")


def protocol_differences(settings: dict[str, Any] | None, segmentation: bool = True) -> list[str]:
    """The settings (from a run record) that differ from upstream's protocol; [] when they match or
    are unknown. The head counts for segmentation tasks only."""
    if not settings:
        return []
    out = [f"{k} {settings[k]!r}" for k, v in UPSTREAM_SETTINGS.items()
           if k in settings and settings[k] != v and (segmentation or k != "head")]
    if settings.get("checkpoint") == "random":
        out.append("no SSL checkpoint")
    return out


def paper_value(task: str, metric: str, partition: str, mode: str,
                settings: dict[str, Any] | None = None) -> float | None:
    """The published number where it is comparable: same task and metric, linear probe, default
    partition, and (when ``settings`` are given) upstream's image size, normalisation, band order,
    head and an SSL checkpoint."""
    ref = PAPER_RESULTS.get(task)
    if ref is None or ref.metric != metric or mode != "linear" or partition != "default":
        return None
    return None if protocol_differences(settings, segmentation=ref.metric == "mIoU") else ref.value


def summarize(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean and sample standard deviation (0 for one seed) of the primary score per
    (task, partition, mode); rows sorted by task, partition, mode."""
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for r in records:
        groups.setdefault((r["task"], r["partition"], r["mode"]), []).append(r)
    rows = []
    for (task, partition, mode), rs in sorted(groups.items()):
        rs = sorted(rs, key=lambda r: r["seed"])
        scores = [float(r["score"]) for r in rs]
        mean = statistics.fmean(scores)
        std = statistics.stdev(scores) if len(scores) > 1 else 0.0
        paper = paper_value(task, rs[0]["metric"], partition, mode, rs[0].get("settings"))
        extra = {}
        for name in EXTRA_METRICS.get(rs[0]["kind"], ()):
            values = [100.0 * float(r["test"][f"test_{name}"]) for r in rs if f"test_{name}" in r.get("test", {})]
            if values:
                extra[name] = round(statistics.fmean(values), 4)
        rows.append({
            "task": task, "kind": rs[0]["kind"], "metric": rs[0]["metric"], "partition": partition, "mode": mode,
            "n_seeds": len(scores), "mean": round(mean, 4), "std": round(std, 4), "min": round(min(scores), 4),
            "max": round(max(scores), 4), "paper": paper,
            "delta": None if paper is None else round(mean - paper, 4),
            "scores": [round(s, 4) for s in scores], "extra": extra,
        })
    return rows


def write_csv(rows: Sequence[dict[str, Any]], path: Path, fields: Sequence[str] = SUMMARY_FIELDS) -> Path:
    with open(path, "w", newline="") as fd:
        w = csv.DictWriter(fd, fieldnames=list(fields), extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: _cell(v) for k, v in r.items()})
    return path


def _cell(v: Any) -> Any:
    if isinstance(v, list):
        return " ".join(map(str, v))
    if isinstance(v, dict):
        return " ".join(f"{k}={x}" for k, x in v.items())
    return "" if v is None else v


def write_json(rows: Sequence[dict[str, Any]], path: Path, meta: dict[str, Any] | None = None) -> Path:
    with open(path, "w") as fd:
        json.dump({"meta": meta or {}, "results": list(rows)}, fd, indent=2)
    return path


def _fmt(v: float | None, digits: int = 1) -> str:
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}"


def markdown_table(rows: Sequence[dict[str, Any]], title: str | None = None) -> str:
    """Markdown table: task, metric, partition, mode, measured mean ± std (n seeds), CARL paper, Δ,
    other metrics; then the published numbers with their protocol and source."""
    lines = [f"### {title}", ""] if title else []
    lines += ["| Task | Metric | Partition | Mode | Measured (%) | Seeds | CARL paper (%) | Δ | Other (%) |",
              "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        delta = "–" if r["delta"] is None else f"{r['delta']:+.1f}"
        other = ", ".join(f"{k} {_fmt(v)}" for k, v in (r.get("extra") or {}).items()) or "–"
        lines.append(f"| {r['task']} | {r['metric']} | {r['partition']} | {r['mode']} | "
                     f"{_fmt(r['mean'])} ± {_fmt(r['std'])} | {r['n_seeds']} | {_fmt(r['paper'])} | {delta} | "
                     f"{other} |")
    lines += ["", "Measured: mean ± sample std over the seeds run here (upstream runs once, unseeded). "
                  "A published number is shown only beside a run made with its protocol (linear probe, "
                  "default partition, SSL checkpoint, image size 128, per-image normalisation, stored bands, "
                  "linear head). MicroAP = micro average precision (multi-label); mIoU = mean of all "
                  "per-class IoUs.", "", paper_table()]
    return "\n".join(lines) + "\n"


def paper_table() -> str:
    """Markdown: every published number with its metric, protocol and source, then the protocol."""
    lines = ["| Task | Metric | CARL (%) | Protocol | Source |", "|---|---|---|---|---|"]
    for r in PAPER_RESULTS.values():
        lines.append(f"| {r.task} | {r.metric} | {r.value:.1f} | {r.protocol} | {r.source} |")
    lines += ["", "Protocol of these numbers:", ""]
    lines += [f"- {k}: {v}" for k, v in UPSTREAM_PROTOCOL.items()]
    return "\n".join(lines)


def write_markdown(rows: Sequence[dict[str, Any]], path: Path, title: str | None = None) -> Path:
    path.write_text(markdown_table(rows, title))
    return path


def write_chart(rows: Sequence[dict[str, Any]], path: Path, title: str | None = None) -> Path:
    """Bar chart: measured mean ± std per row, the paper's value beside it where comparable."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    labels = [f"{r['task']}\n{r['metric']}" + ("" if r["partition"] == "default" else f"\n{r['partition']}")
              + ("" if r["mode"] == "linear" else f"\n{r['mode']}") for r in rows]
    x = list(range(len(rows)))
    fig, ax = plt.subplots(figsize=(max(4.0, 1.6 * len(rows) + 1.5), 4.0))
    shift = [-0.2 if r["paper"] is not None else 0.0 for r in rows]  # centred when there is no paper bar
    ax.bar([i + d for i, d in zip(x, shift)], [r["mean"] for r in rows], 0.4, yerr=[r["std"] for r in rows],
           capsize=4, label="measured (mean ± std)", color="#3b7dd8")
    px = [(i + 0.2, r["paper"]) for i, r in zip(x, rows) if r["paper"] is not None]
    if px:
        ax.bar([p[0] for p in px], [p[1] for p in px], 0.4, label="CARL paper", color="#bbbbbb", hatch="//")
    ax.set_xticks(x, labels, fontsize=8)
    ax.set_ylabel("score (%)")
    ax.set_ylim(0, 100)
    ax.set_title(title or "GEO-Bench")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
