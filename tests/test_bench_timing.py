"""benchmarks/timing.py: the arithmetic of paired rounds (issue #31), on fixed fake timings."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location("bench_timing", Path(__file__).parents[1] / "benchmarks" / "timing.py")
timing = importlib.util.module_from_spec(_spec)
sys.modules["bench_timing"] = timing  # dataclasses look their module up
_spec.loader.exec_module(timing)


def test_ratios_are_paired_by_round_not_by_sorting():
    # the case of the old bench_int8: the machine's load changed from round to round, and one round held the
    # median of both candidates, so medians taken separately said 1.54x; the rounds, paired, say 1.10x.
    ours = [2.0, 2.2, 1.0, 0.5, 0.6]
    per_round = [1.12, 1.05, 1.54, 1.10, 1.03]
    upstream = [o * q for o, q in zip(ours, per_round)]
    by_medians = sorted(upstream)[2] / sorted(ours)[2]
    r = timing.summarize(timing.paired_ratios(upstream, ours))
    assert by_medians == pytest.approx(1.54)
    assert r.median == pytest.approx(1.10) and r.low == pytest.approx(1.03) and r.high == pytest.approx(1.54)
    assert r.rounds == 5 and str(r) == "1.10x (1.03-1.54, 5 rounds)"
    with pytest.raises(ValueError):
        timing.paired_ratios([1.0], [0.0])
    with pytest.raises(ValueError):
        timing.summarize([])


def test_time_paired_varies_the_order_and_divides_by_the_calls():
    now = [0.0]
    calls: list[str] = []

    def clock() -> float:
        return now[0]

    def make(name: str, cost: float):
        def fn() -> None:
            calls.append(name)
            now[0] += cost
        return fn

    t = timing.time_paired({"a": make("a", 0.25), "b": make("b", 0.5)}, rounds=3, block_seconds=1.0, min_calls=2,
                           warmup=1, clock=clock)
    assert calls[:2] == ["a", "b"]  # warm-up
    timed = calls[2:]
    # round 0: a x4 (1.0 s), b x2; round 1: b first; round 2: b first (rotated, not reversed)
    assert timed == ["a"] * 4 + ["b"] * 2 + ["b"] * 2 + ["a"] * 4 + ["b"] * 2 + ["a"] * 4
    assert t.seconds == {"a": [0.25] * 3, "b": [0.5] * 3} and t.rounds == 3
    assert t.speedup("a", "b").median == pytest.approx(2.0)
    assert t.median_seconds("b") == pytest.approx(0.5)


def test_round_order_varies_who_goes_first_and_who_runs_before_whom():
    names = ["a", "b", "c"]
    orders = [timing.round_order(names, r) for r in range(6)]
    assert sorted("".join(o) for o in orders) == ["abc", "acb", "bac", "bca", "cab", "cba"]
    predecessors = {(o[i - 1], o[i]) for o in orders for i in range(1, 3)}
    assert len(predecessors) == 6  # every candidate runs right after each other one in some round
    assert [timing.round_order(["a", "b"], r)[0] for r in range(4)] == ["a", "b", "b", "a"]


def test_a_loaded_machine_is_marked():
    t = timing.PairedTiming({"a": [1.0]}, load_before=0.5, load_after=3.5, cores=2)
    assert t.loaded and "LOADED" in t.load_text() and t.to_dict()["loaded"]
    assert not timing.PairedTiming({"a": [1.0]}, 0.5, 1.9, cores=2).loaded
