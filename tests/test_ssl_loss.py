"""CARL-SSL loss = hand-computed VICReg-style formula (upstream weights and normalisation)."""

from __future__ import annotations

import math

import pytest
import torch

from carl_geo.ssl.loss import BranchCoeffs, SSLLoss, branch_loss


def _hand_branch(z: list, t: list, inv_c: float, var_c: float, cov_c: float, gamma: float, eps: float = 1e-5) -> float:
    """The formula written out with Python loops: z, t nested lists [M][P][D]."""
    m, p, d = len(z), len(z[0]), len(z[0][0])
    inv = sum((z[i][j][k] - t[i][j][k]) ** 2 for i in range(m) for j in range(p) for k in range(d)) / (m * p * d)
    var_terms, cov_terms = [], []
    for j in range(p):
        means = [sum(z[i][j][k] for i in range(m)) / m for k in range(d)]
        for k in range(d):
            v = sum((z[i][j][k] - means[k]) ** 2 for i in range(m)) / (m - 1)
            var_terms.append(max(0.0, gamma - math.sqrt(v + eps)))
        off = 0.0
        for a in range(d):
            for b in range(d):
                if a != b:
                    c = sum((z[i][j][a] - means[a]) * (z[i][j][b] - means[b]) for i in range(m)) / (m - 1)
                    off += c * c
        cov_terms.append(off / d)
    var = sum(var_terms) / len(var_terms)
    cov = sum(cov_terms) / len(cov_terms)
    return (inv_c * inv + var_c * var + cov_c * cov) / (inv_c + var_c + cov_c)


def test_loss_equals_hand_computed_formula():
    g = torch.Generator().manual_seed(0)
    pred_spat, targ_spat = torch.randn(6, 3, 5, generator=g), torch.randn(6, 3, 5, generator=g)
    pred_spec, targ_spec = 0.3 * torch.randn(4, 2, 4, generator=g), torch.randn(4, 2, 4, generator=g)
    loss = SSLLoss.from_upstream({
        "spatial_coeff": {"loss_weight": 2.0, "inv_coeff": 1.0, "var_coeff": 0.5, "cov_coeff": 0.05, "var_param": 1},
        "spectral_coeff": {"loss_weight": 1.0, "inv_coeff": 1.0, "var_coeff": 1.0, "cov_coeff": 0.05, "var_param": 1},
    })
    out = loss(pred_spat, targ_spat, pred_spec, targ_spec)
    spat = _hand_branch(pred_spat.double().tolist(), targ_spat.double().tolist(), 1.0, 0.5, 0.05, 1.0)
    spec = _hand_branch(pred_spec.double().tolist(), targ_spec.double().tolist(), 1.0, 1.0, 0.05, 1.0)
    assert float(out["spat_loss"]) == pytest.approx(spat, rel=1e-5)
    assert float(out["spec_loss"]) == pytest.approx(spec, rel=1e-5)
    assert float(out["loss"]) == pytest.approx((2.0 * spat + 1.0 * spec) / 3.0, rel=1e-5)
    # the variance hinge is active for the low-variance spectral predictions, not for unit-variance ones
    assert float(out["spec_var"]) > 0.5 and float(out["spat_var"]) < 0.3


def test_perfect_prediction_leaves_only_regulariser_terms():
    z = torch.randn(8, 4, 6, generator=torch.Generator().manual_seed(1))
    terms = branch_loss(z, z, BranchCoeffs())
    assert float(terms["inv"]) == 0.0
    expected = (float(terms["var"]) + 0.05 * float(terms["cov"])) / 2.05
    assert float(terms["loss"]) == pytest.approx(expected, rel=1e-6)


def test_loss_errors():
    with pytest.raises(ValueError, match="unknown loss coefficient"):
        SSLLoss.from_upstream({"spatial_coeff": {"sim_coeff": 1.0}})
    with pytest.raises(ValueError, match="at least 2"):
        branch_loss(torch.zeros(1, 2, 3), torch.zeros(1, 2, 3), BranchCoeffs())
