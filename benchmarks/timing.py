"""One timing method for every benchmark (issue #31): paired rounds, ratios per round, load on record.

Why: a median of each candidate's times taken separately lets one noisy round decide both medians (the old
bench_int8 reported 4.81x where paired rounds give 2.07x). Here:

* every candidate is warmed up (``warmup`` calls), then timed in ``rounds`` rounds; in each round every candidate
  runs back to back (who goes first, and who runs just before whom, change from round to round:
  :func:`round_order`) for at least ``block_seconds`` (at least ``min_calls`` calls), and its seconds per call in
  that round are recorded;
* a candidate's speed-up over the baseline is taken **per round** (baseline seconds / candidate seconds, both from
  the same round, so a change of machine load hits both alike), and reported as the median of the round ratios
  with their spread (min..max);
* the 1-minute load average is recorded before and after; a run that saw a load above the core count is marked
  ``loaded`` and says so in its table line.

Pure Python + time: :func:`paired_ratios` and :func:`summarize` are the arithmetic (tested on fixed timings in
``tests/test_bench_timing.py``); :func:`time_paired` is the clock.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class PairedTiming:
    """Seconds per call of each candidate in each round (``seconds[name][round]``), and the load around the run."""

    seconds: dict[str, list[float]]
    load_before: float | None = None
    load_after: float | None = None
    cores: int = field(default_factory=lambda: os.cpu_count() or 1)

    @property
    def rounds(self) -> int:
        return min((len(v) for v in self.seconds.values()), default=0)

    @property
    def loaded(self) -> bool:
        """The machine's 1-minute load exceeded its core count before or after the run."""
        loads = [v for v in (self.load_before, self.load_after) if v is not None]
        return bool(loads) and max(loads) > self.cores

    def median_seconds(self, name: str) -> float:
        return statistics.median(self.seconds[name])

    def speedup(self, name: str, baseline: str) -> "Ratio":
        """``baseline`` seconds / ``name`` seconds, per round (> 1: ``name`` is faster)."""
        return summarize(paired_ratios(self.seconds[baseline], self.seconds[name]))

    def load_text(self) -> str:
        text = f"load {self.load_before} -> {self.load_after} on {self.cores} cores"
        return text + (" (LOADED: above the core count, numbers unreliable)" if self.loaded else "")

    def to_dict(self) -> dict[str, Any]:
        return {"seconds_per_call": self.seconds, "rounds": self.rounds, "load_before": self.load_before,
                "load_after": self.load_after, "cores": self.cores, "loaded": self.loaded}


@dataclass(frozen=True)
class Ratio:
    """Median of per-round ratios, their min and max, and how many rounds."""

    median: float
    low: float
    high: float
    rounds: int

    def __str__(self) -> str:
        return f"{self.median:.2f}x ({self.low:.2f}-{self.high:.2f}, {self.rounds} rounds)"

    def to_dict(self) -> dict[str, Any]:
        return {"median": self.median, "min": self.low, "max": self.high, "rounds": self.rounds}


def paired_ratios(numerator: Sequence[float], denominator: Sequence[float]) -> list[float]:
    """``numerator[r] / denominator[r]`` for every round r both have (paired by round, never by sorting)."""
    if not numerator or not denominator:
        raise ValueError("paired ratios need at least one round of each")
    if any(v <= 0 for v in (*numerator, *denominator)):
        raise ValueError("seconds per call must be positive")
    return [a / b for a, b in zip(numerator, denominator)]


def summarize(ratios: Sequence[float]) -> Ratio:
    """Median, min and max of per-round ratios."""
    if not ratios:
        raise ValueError("no ratios to summarize")
    return Ratio(statistics.median(ratios), min(ratios), max(ratios), len(ratios))


def load_average() -> float | None:
    """The 1-minute load average, or None where the OS has none."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def round_order(names: Sequence[str], r: int) -> list[str]:
    """The order of the candidates in round ``r``: rotated by ``r // 2``, and reversed in odd rounds.

    Who goes first changes from round to round, and so does who runs just before whom: a candidate can leave the
    machine slower for the next one (ONNX Runtime's spinning worker threads took 17 % of the next torch matrix
    product's speed here), and a plain rotation would give each candidate the same predecessor in every round.
    With 2 candidates: ab, ba, ba, ab, ...; with 3, the 6 permutations in 6 rounds."""
    k = (r // 2) % max(len(names), 1)
    order = list(names[k:]) + list(names[:k])
    return order[::-1] if r % 2 else order


def time_paired(candidates: Mapping[str, Callable[[], Any]], *, rounds: int = 5, block_seconds: float = 1.0,
                min_calls: int = 2, warmup: int = 2, sync: Callable[[], None] | None = None,
                clock: Callable[[], float] = time.perf_counter) -> PairedTiming:
    """Time zero-argument callables in alternating rounds (see the module doc).

    Args:
        candidates: name -> callable (one call = one unit: a forward, a tile batch, a scene).
        rounds: rounds; every candidate runs once per round.
        block_seconds: each candidate's block in a round lasts at least this long ...
        min_calls: ... and at least this many calls.
        warmup: untimed calls of each candidate first.
        sync: called before reading the clock (e.g. ``torch.cuda.synchronize``).
        clock: seconds (tests pass a fake clock).
    """
    names = list(candidates)
    if not names or rounds < 1 or min_calls < 1:
        raise ValueError("time_paired needs candidates, rounds >= 1 and min_calls >= 1")
    sync = sync or (lambda: None)
    before = load_average()
    for name in names:
        for _ in range(warmup):
            candidates[name]()
    sync()
    seconds: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds):
        order = round_order(names, r)
        for name in order:
            fn = candidates[name]
            n, start = 0, clock()
            while True:
                fn()
                n += 1
                if n >= min_calls:
                    sync()
                    elapsed = clock() - start
                    if elapsed >= block_seconds:
                        break
            seconds[name].append(elapsed / n)
    return PairedTiming(seconds, before, load_average())


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo), and whether it has AMX: bf16 speed depends on it."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor()
    name = next((ln.split(":", 1)[1].strip() for ln in info.splitlines() if ln.startswith("model name")), "?")
    return name + (", AMX" if " amx_bf16" in info else "")


#: Packages whose version moves a benchmark's times or memory (the torch wheel's CUDA libraries, for one, add
#: about 270 MiB of resident memory at import even on a machine without a GPU).
KEY_PACKAGES = ("torch", "numpy", "scikit-learn", "rasterio", "timm", "torchgeo")


def software_versions(packages: Sequence[str] = KEY_PACKAGES) -> dict[str, str]:
    """``{package: version}`` of the installed ``packages`` (absent ones are left out), plus ``python``."""
    out = {"python": platform.python_version()}
    for name in packages:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return out
