"""The README's torchgeo script (dataset + sampler + DataLoader + CARL task + Trainer) runs as written."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def _torchgeo_script() -> str:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    scripts = [b for b in blocks if "CARLSegmentationTask" in b and "DataLoader" in b]
    assert len(scripts) == 1, "README should have exactly one torchgeo training script"
    return scripts[0]


def test_readme_script_is_short():
    lines = [line for line in _torchgeo_script().splitlines() if line.strip()]
    assert len(lines) <= 20, f"the README's torchgeo script has {len(lines)} lines"


@pytest.mark.slow  # > 4 s on the 2-core machine
def test_readme_script_trains(tmp_path, monkeypatch):
    pytest.importorskip("torchgeo.samplers", reason="the script needs torchgeo")
    monkeypatch.chdir(tmp_path)  # Lightning writes lightning_logs/ and checkpoints here
    namespace: dict = {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        exec(compile(_torchgeo_script(), str(README), "exec"), namespace)
    renamed = [str(w.message) for w in caught if "Use torchgeo" in str(w.message)]
    assert not renamed, f"the script uses deprecated torchgeo names: {renamed}"
    task = namespace["task"]
    assert task.trainer.current_epoch == 2 and task.trainer.global_step > 0
    assert any(p.exists() for p in tmp_path.rglob("*.ckpt"))
