"""Shared fixtures: the upstream reference folder and small models."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

import carl_geo

ROOT = Path(__file__).resolve().parents[1]


def reference_dir() -> Path | None:
    """``$CARL_REFERENCE_DIR`` or ``../shared/carl_reference`` beside the project, if present."""
    env = os.environ.get("CARL_REFERENCE_DIR")
    path = Path(env) if env else ROOT.parent / "shared" / "carl_reference"
    return path if path.is_dir() else None


@pytest.fixture(scope="session")
def tiny_model() -> carl_geo.CARL:
    torch.manual_seed(0)
    return carl_geo.CARL(carl_geo.tiny_config()).eval()


@pytest.fixture(scope="session")
def s2_wavelengths() -> torch.Tensor:
    return torch.tensor(carl_geo.get_sensor("sentinel2_l1c").wavelengths)
