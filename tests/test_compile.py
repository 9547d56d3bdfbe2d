"""torch.compile friendliness: one graph (fullgraph=True), and band bucketing avoids recompiles.

Uses the ``aot_eager`` backend (traces forward and backward graphs like inductor, without
generating C++), which keeps the test fast on CPU; the GPU benchmark uses inductor.
"""

from __future__ import annotations

import pytest
import torch
import torch._dynamo

import carl_geo


@pytest.mark.slow  # compiles, exports or trains: 1.5-3 s each under load; together they push "not slow" past 1 min
def test_fullgraph_compile_matches_eager():
    torch._dynamo.reset()
    model = carl_geo.CARL(carl_geo.tiny_config()).eval()
    x, wl = torch.randn(2, 5, 32, 32), torch.tensor([0.49, 0.56, 0.665, 0.842, 1.61])
    compiled = torch.compile(model, backend="aot_eager", fullgraph=True)
    with torch.no_grad():
        torch.testing.assert_close(compiled(x, wl).spatial, model(x, wl).spatial, rtol=1e-4, atol=1e-4)


@pytest.mark.slow  # compiles, exports or trains: 1.5-3 s each under load; together they push "not slow" past 1 min
def test_band_bucketing_avoids_recompiles():
    torch._dynamo.reset()
    model = carl_geo.CARL(carl_geo.tiny_config()).eval()
    model.band_bucket = 16
    frames = []

    def backend(gm, example_inputs):
        frames.append(gm)
        return gm.forward

    reference = carl_geo.CARL(carl_geo.tiny_config()).eval()
    reference.load_state_dict(model.state_dict())
    model.compile_encoder(backend=backend, fullgraph=True, dynamic=False)
    with torch.no_grad():
        for c in (13, 12, 9, 16):  # all bucket to 16 bands
            x, wl = torch.randn(1, c, 16, 16), torch.linspace(0.45, 2.2, c)
            torch.testing.assert_close(model(x, wl).spatial, reference(x, wl).spatial, rtol=1e-4, atol=1e-4)
    assert len(frames) == 1, f"{len(frames)} graphs compiled for 4 band counts of one bucket"
