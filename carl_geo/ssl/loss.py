"""CARL-SSL feature-space loss (upstream ``VICRegLoss`` on predictions vs. teacher targets).

For predictions z (M, ..., D) and targets t of the same shape (M = samples x masks):

* invariance: ``mean((z - t)**2)``;
* variance: ``mean(relu(var_param - sqrt(var_M(z) + eps)))`` (unbiased variance over dim 0);
* covariance: for every position (the ``...`` axes), the (D, D) covariance of z over dim 0
  (divided by M - 1); the sum of its squared off-diagonal entries / D; mean over positions;
* branch loss = ``(inv_coeff*inv + var_coeff*var + cov_coeff*cov) / (inv_coeff + var_coeff + cov_coeff)``.

The total is ``(w_spat * spatial + w_spec * spectral) / (w_spat + w_spec)``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from carl_geo.errors import CarlGeoError

EPS = 1e-5


@dataclass
class BranchCoeffs:
    """Upstream ``loss_coeff/{spatial,spectral}_coeff``."""

    loss_weight: float = 1.0
    inv_coeff: float = 1.0
    var_coeff: float = 1.0
    cov_coeff: float = 0.05
    var_param: float = 1.0

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> BranchCoeffs:
        d = dict(d or {})
        unknown = set(d) - {f.name for f in fields(cls)}
        if unknown:
            raise CarlGeoError(f"unknown loss coefficient(s) {sorted(unknown)}; known: {[f.name for f in fields(cls)]}")
        out = cls(**{k: float(v) for k, v in d.items()})
        if out.inv_coeff + out.var_coeff + out.cov_coeff <= 0:
            raise CarlGeoError("inv_coeff + var_coeff + cov_coeff must be > 0")
        return out


def covariance_loss(z: Tensor) -> Tensor:
    """Mean over positions of the squared off-diagonal covariance (over dim 0) / D."""
    z = z - z.mean(dim=0)
    m, d = z.shape[0], z.shape[-1]
    cov = torch.einsum("b...c,b...d->...cd", z, z) / (m - 1)
    off = ~torch.eye(d, dtype=torch.bool, device=z.device)
    return (cov[..., off].pow(2).sum(-1) / d).mean()


def branch_loss(pred: Tensor, target: Tensor, coeffs: BranchCoeffs, eps: float = EPS) -> dict[str, Tensor]:
    """One branch's loss and its terms (``loss``, ``inv``, ``var``, ``cov``), computed in float32."""
    pred, target = pred.float(), target.float()
    if pred.shape != target.shape:
        raise ValueError(f"prediction {tuple(pred.shape)} and target {tuple(target.shape)} differ in shape")
    if pred.shape[0] < 2:
        raise CarlGeoError("the variance/covariance terms need at least 2 predictions along dim 0 (batch size >= 2)")
    inv = F.mse_loss(pred, target)
    std = torch.sqrt(pred.var(dim=0) + eps)
    var = F.relu(coeffs.var_param - std).mean()
    cov = covariance_loss(pred)
    total = (coeffs.inv_coeff * inv + coeffs.var_coeff * var + coeffs.cov_coeff * cov) / (
        coeffs.inv_coeff + coeffs.var_coeff + coeffs.cov_coeff)
    return {"loss": total, "inv": inv, "var": var, "cov": cov}


@dataclass
class SSLLoss:
    """Both branches, weighted and normalised as upstream."""

    spatial: BranchCoeffs
    spectral: BranchCoeffs

    @classmethod
    def from_upstream(cls, loss_coeff: dict[str, Any] | None) -> SSLLoss:
        """From upstream's ``loss_coeff`` dict (keys ``spatial_coeff``, ``spectral_coeff``)."""
        d = dict(loss_coeff or {})
        unknown = set(d) - {"spatial_coeff", "spectral_coeff"}
        if unknown:
            raise CarlGeoError(f"loss_coeff has unknown key(s) {sorted(unknown)}; use spatial_coeff / spectral_coeff")
        return cls(BranchCoeffs.from_dict(d.get("spatial_coeff")), BranchCoeffs.from_dict(d.get("spectral_coeff")))

    def to_upstream(self) -> dict[str, Any]:
        return {"spatial_coeff": asdict(self.spatial), "spectral_coeff": asdict(self.spectral)}

    def __call__(self, pred_spatial: Tensor, target_spatial: Tensor, pred_spectral: Tensor,
                 target_spectral: Tensor) -> dict[str, Tensor]:
        """Returns ``loss`` and the branch terms ``spat_loss``, ``spat_inv``, ..., ``spec_cov``."""
        s = branch_loss(pred_spatial, target_spatial, self.spatial)
        p = branch_loss(pred_spectral, target_spectral, self.spectral)
        ws, wp = self.spatial.loss_weight, self.spectral.loss_weight
        out = {"loss": (ws * s["loss"] + wp * p["loss"]) / (ws + wp)}
        out.update({f"spat_{k}": v for k, v in s.items()})
        out.update({f"spec_{k}": v for k, v in p.items()})
        return out
