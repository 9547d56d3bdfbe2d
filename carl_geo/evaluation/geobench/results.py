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
from pathlib import Path
from typing import Any

#: CARL paper (ICLR 2026), GEO-Bench, frozen backbone + linear probe, default partition: metric, value (%).
PAPER_RESULTS: dict[str, tuple[str, float]] = {
    "m-bigearthnet": ("F1", 69.0),
    "m-eurosat": ("Accuracy", 84.4),
    "m-cashew-plantation": ("mIoU", 18.9),
    "m-SA-crop-type": ("mIoU", 26.5),
}
#: Tasks the paper reports (the default task list).
PAPER_TASKS = tuple(PAPER_RESULTS)
#: Headline test metric per task kind (``test_<name>`` as logged by the tasks).
PRIMARY_METRIC = {"classification": "Accuracy", "multilabel": "F1", "segmentation": "mIoU"}
SUMMARY_FIELDS = ("task", "kind", "metric", "partition", "mode", "n_seeds", "mean", "std", "min", "max",
                  "paper", "delta", "scores")


def paper_value(task: str, metric: str, partition: str, mode: str) -> float | None:
    """The paper's number where it is comparable (same task and metric, linear probe, default partition)."""
    ref = PAPER_RESULTS.get(task)
    if ref is None or ref[0] != metric or mode != "linear" or partition != "default":
        return None
    return ref[1]


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
        paper = paper_value(task, rs[0]["metric"], partition, mode)
        rows.append({
            "task": task, "kind": rs[0]["kind"], "metric": rs[0]["metric"], "partition": partition, "mode": mode,
            "n_seeds": len(scores), "mean": round(mean, 4), "std": round(std, 4), "min": round(min(scores), 4),
            "max": round(max(scores), 4), "paper": paper,
            "delta": None if paper is None else round(mean - paper, 4),
            "scores": [round(s, 4) for s in scores],
        })
    return rows


def write_csv(rows: Sequence[dict[str, Any]], path: Path, fields: Sequence[str] = SUMMARY_FIELDS) -> Path:
    with open(path, "w", newline="") as fd:
        w = csv.DictWriter(fd, fieldnames=list(fields), extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: (" ".join(map(str, v)) if isinstance(v, list) else ("" if v is None else v))
                        for k, v in r.items()})
    return path


def write_json(rows: Sequence[dict[str, Any]], path: Path, meta: dict[str, Any] | None = None) -> Path:
    with open(path, "w") as fd:
        json.dump({"meta": meta or {}, "results": list(rows)}, fd, indent=2)
    return path


def _fmt(v: float | None, digits: int = 1) -> str:
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}"


def markdown_table(rows: Sequence[dict[str, Any]], title: str | None = None) -> str:
    """Markdown table: task, metric, partition, mode, measured mean ± std (n seeds), CARL paper, Δ."""
    lines = [f"### {title}", ""] if title else []
    lines += ["| Task | Metric | Partition | Mode | Measured (%) | Seeds | CARL paper (%) | Δ |",
              "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        delta = "–" if r["delta"] is None else f"{r['delta']:+.1f}"
        lines.append(f"| {r['task']} | {r['metric']} | {r['partition']} | {r['mode']} | "
                     f"{_fmt(r['mean'])} ± {_fmt(r['std'])} | {r['n_seeds']} | {_fmt(r['paper'])} | {delta} |")
    lines += ["", "Paper: CARL (ICLR 2026), CARL-SSL backbone, frozen, linear probe, default partition; "
                  "F1 = micro F1 (multi-label), mIoU = mean of all per-class IoUs."]
    return "\n".join(lines) + "\n"


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
