"""Which model state polygon training keeps (carl_geo.polygon_training.checkpoints: WeightAverage, BestCheckpoint)."""

from __future__ import annotations

import torch

from carl_geo.polygon_training.checkpoints import BestCheckpoint, WeightAverage


def _model(value: float) -> torch.nn.Module:
    m = torch.nn.Linear(2, 1)
    with torch.no_grad():
        m.weight.fill_(value)
    return m


def _bn_model(value: float, batches: int) -> torch.nn.Module:
    m = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2))
    with torch.no_grad():
        m[0].weight.fill_(value)
        m[1].running_mean.fill_(value)
    m[1].num_batches_tracked.fill_(batches)
    return m


def test_the_average_is_the_mean_of_the_second_half() -> None:
    """States before half the budget are left out; floats are averaged, BatchNorm's batch counter is the latest."""
    average = WeightAverage(from_share=0.5)
    added = [average.update(step, share, _bn_model(value, step))
             for value, step, share in [(100.0, 10, 0.2), (1.0, 20, 0.5), (2.0, 30, 0.7), (6.0, 40, 0.9)]]
    assert added == [False, True, True, True] and average.steps == [20, 30, 40]
    assert torch.allclose(average.state["0.weight"], torch.full((2, 2), 3.0))
    assert torch.allclose(average.state["1.running_mean"], torch.full((2,), 3.0))
    assert int(average.state["1.num_batches_tracked"]) == 40


def test_the_average_is_a_copy_and_a_short_run_keeps_its_last_state() -> None:
    average = WeightAverage(from_share=0.5)
    model = _model(4.0)
    assert not average.update(5, 0.1, model)
    assert average.update(9, 0.3, model, last=True) and average.steps == [9]
    with torch.no_grad():
        model.weight.fill_(7.0)
    assert float(average.state["weight"][0, 0]) == 4.0


def test_a_lucky_early_score_is_not_kept() -> None:
    """Validations before half the budget are logged only: the kept state is the best of the second half."""
    keeper = BestCheckpoint(patience=4, from_share=0.5)
    history = [(0.9, 10, 0.1), (0.2, 20, 0.3), (0.5, 30, 0.5), (0.6, 40, 0.6), (0.55, 50, 0.7)]
    stops = [keeper.update(score, step, share, _model(step)) for score, step, share in history]
    assert stops == [False] * 5
    assert keeper.step == 40 and keeper.score == 0.6 and keeper.stale == 1
    assert float(keeper.state["weight"][0, 0]) == 40.0  # a copy of the model at step 40


def test_the_kept_state_is_a_copy() -> None:
    keeper = BestCheckpoint(patience=2, from_share=0.0)
    model = _model(1.0)
    keeper.update(0.5, 1, 0.2, model)
    with torch.no_grad():
        model.weight.fill_(7.0)
    assert float(keeper.state["weight"][0, 0]) == 1.0


def test_patience_counts_only_checkpoints_that_count() -> None:
    keeper = BestCheckpoint(patience=2, from_share=0.5)
    assert not keeper.update(0.4, 10, 0.2, _model(1))        # before half: no state, no staleness
    assert keeper.state is None and keeper.stale == 0 and not keeper.is_new
    assert not keeper.update(0.3, 20, 0.5, _model(2)) and keeper.is_new
    assert not keeper.update(0.3 + 5e-5, 30, 0.6, _model(3))  # within min_gain: not better
    assert keeper.update(0.2, 40, 0.7, _model(4))            # second stale check: stop
    assert keeper.step == 20 and keeper.stale == 2


def test_the_last_validation_counts_even_in_a_short_run() -> None:
    """A run cut short (time budget) before half its budget still keeps its last validation."""
    keeper = BestCheckpoint(patience=4, from_share=0.5)
    keeper.update(0.7, 5, 0.1, _model(5))
    keeper.update(0.4, 9, 0.3, _model(9), last=True)
    assert keeper.step == 9 and keeper.score == 0.4
