"""Shared fixtures: small models, one torch thread and a synthetic GEO-Bench folder (plain helpers, such as
the raster writer and the micro backbone, are in ``helpers.py``)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

import carl_geo

# No test may reach the internet: weights downloads are off unless a test turns them on (loopback server).
os.environ.setdefault("CARL_GEO_OFFLINE", "1")


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty weights cache folder (``$CARL_GEO_HOME``), downloads allowed, no CARL_GEO_WEIGHTS override
    (the weights tests serve files from a loopback server)."""
    monkeypatch.setenv("CARL_GEO_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("CARL_GEO_WEIGHTS", raising=False)
    monkeypatch.delenv("CARL_GEO_OFFLINE", raising=False)
    return tmp_path / "cache"


@pytest.fixture(scope="session")
def tiny_model() -> carl_geo.CARL:
    torch.manual_seed(0)
    return carl_geo.CARL(carl_geo.tiny_config()).eval()


@pytest.fixture(scope="session")
def s2_wavelengths() -> torch.Tensor:
    return torch.tensor(carl_geo.get_sensor("sentinel2_l1c").wavelengths)


@contextmanager
def _one_torch_thread() -> Iterator[None]:
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


@pytest.fixture
def one_thread() -> Iterator[None]:
    """One torch thread during a test: small ops on a shared 2-core machine run faster without
    intra-op threads (use with ``pytestmark = pytest.mark.usefixtures("one_thread")``)."""
    with _one_torch_thread():
        yield


@pytest.fixture(scope="module")
def one_thread_per_module() -> Iterator[None]:
    """:func:`one_thread` for a whole module, its module-scoped fixtures included."""
    with _one_torch_thread():
        yield


@pytest.fixture(scope="session")
def make_geobench(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """``make_geobench(n_train, n_valid, n_test)``: a new folder with the synthetic GEO-Bench
    benchmark (three tasks, 16 x 16 px samples)."""

    def make(n_train: int, n_valid: int, n_test: int, size: int = 16) -> Path:
        from carl_geo.evaluation.geobench import write_synthetic_benchmark

        root = tmp_path_factory.mktemp("gb")
        write_synthetic_benchmark(root, n_train=n_train, n_valid=n_valid, n_test=n_test, size=size)
        return root

    return make
