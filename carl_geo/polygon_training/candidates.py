"""Stage 6 of polygon training: candidate models, scored on the held-out polygons, and the one kept.

Every run fits the same candidates on the same training pixels and scores each on the held-out polygons (whole
polygons, or spatial blocks of a class with one polygon):

============= ===================================================== ================= =========
name          features                                              head(s)           uses CARL
============= ===================================================== ================= =========
rf            the bands                                             forest            no
rf_context    the bands + window means of their principal components forest            no
carl          the CARL model alone (chips or pixels mode)           --                yes
carl_forest   context + CARL's class probabilities                  forest            yes
carl_mlp      context + CARL's class probabilities                  MLP               yes
carl_ensemble the mean of carl's, carl_forest's and carl_mlp's class probabilities          yes
============= ===================================================== ================= =========

:func:`choose` keeps ``carl_ensemble`` unless another CARL candidate is clearly better on the held-out polygons,
and a plain forest only when it is clearly better than the CARL candidate so chosen ("clearly": in
:data:`CONFIDENCE` of the resamples of the held-out polygons, :class:`HeldOut`). Why (test mIoU on the bench's reference maps, one CARL model per scene, heads refitted on every
polygon; ``benchmarks/bench_polygons.py``): no single head wins everywhere (NC: CARL alone 0.344, + forest 0.293,
+ MLP 0.259; Sentinel-2: 0.270 / 0.327 / 0.348; 200-band scene: 0.429 / 0.693 / 0.770), while the ensemble is above
the forest + context on all three (NC 0.310 vs 0.276, Sentinel-2 0.358 vs 0.320, 200 bands 0.730 vs 0.628). The
held-out polygons rank close candidates by chance (NC seed 1: carl_mlp 0.413 held out, 0.259 on the map), so close
calls go to the ensemble, and a plain forest replaces it only on clear evidence (a CARL model that failed).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from torch import nn

from carl_geo.models.names import SELECT_NAMES
from carl_geo.polygon_training.heads import fit_head, head_probabilities
from carl_geo.polygon_training.metrics import confusion_matrix, segmentation_report
from carl_geo.polygon_training.pixel_features import PixelSample


@dataclass(frozen=True)
class CandidateSpec:
    """One kind of candidate: its name, its heads (``"forest"``, ``"mlp"``; none: CARL alone), the feature columns
    they read (:data:`~carl_geo.polygon_training.pixel_features.COLUMN_SETS`), whether it uses CARL, the weight of
    CARL's own probabilities in its output (``w * p_carl + (1 - w) * mean(p_heads)``) and a description."""

    name: str
    heads: tuple[str, ...]
    columns: str | None
    uses_carl: bool
    carl_weight: float
    features: str


CANDIDATES: tuple[CandidateSpec, ...] = (
    CandidateSpec("rf", ("forest",), "bands", False, 0.0, "bands"),
    CandidateSpec("rf_context", ("forest",), "context", False, 0.0, "bands + window context"),
    CandidateSpec("carl", (), None, True, 1.0, "CARL model alone"),
    CandidateSpec("carl_forest", ("forest",), "all", True, 0.0, "context + CARL probabilities"),
    CandidateSpec("carl_mlp", ("mlp",), "all", True, 0.0, "context + CARL probabilities"),
    CandidateSpec("carl_ensemble", ("forest", "mlp"), "all", True, 1 / 3, "carl + carl_forest + carl_mlp"),
)
CANDIDATE_NAMES: tuple[str, ...] = tuple(c.name for c in CANDIDATES)
assert ("auto", *CANDIDATE_NAMES) == SELECT_NAMES, "carl_geo.models.names.SelectName must list the candidates"
#: The default candidate.
DEFAULT_CANDIDATE = "carl_ensemble"
#: "Clearly better" on the held-out polygons: a candidate's mIoU is higher in at least this share of
#: :data:`BOOTSTRAP_DRAWS` resamples of the held-out polygons (drawn with replacement, whole polygons), and higher by
#: at least :data:`MIN_GAIN` on all of them. A few held-out polygons rank close candidates by chance: on NC (7
#: held-out polygons) the forest + context led the CARL candidates by 0.02-0.09 on them in four runs while the dense
#: reference map put it 0.04-0.07 below them (seed 0: held out 0.599 vs carl_forest 0.527; map 0.266 vs 0.314).
CONFIDENCE = 0.95
MIN_GAIN = 0.02
BOOTSTRAP_DRAWS = 400


@dataclass
class Candidate:
    """A fitted candidate and its held-out scores.

    Attributes:
        spec: what it is.
        heads: the fitted heads (none for CARL alone).
        report: :func:`~carl_geo.polygon_training.metrics.segmentation_report` on the held-out pixels.
        seconds: fitting + scoring time of its own heads (a head shared with another candidate counts once).
        n_features: columns the heads read.
        prediction: (N,) classes it predicted for the held-out pixels.
    """

    spec: CandidateSpec
    heads: list[nn.Module]
    report: dict[str, Any]
    seconds: float
    n_features: int = 0
    prediction: np.ndarray | None = None

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def carl_weight(self) -> float:
        return self.spec.carl_weight

    @property
    def miou(self) -> float:
        return float(self.report["mean_iou"])

    def row(self) -> dict[str, Any]:
        """The candidate's line of the evidence table (JSON types)."""
        return {"name": self.name, "features": self.spec.features, "n_features": self.n_features,
                "head": "+".join(self.spec.heads) or "-", "uses_carl": self.spec.uses_carl,
                "carl_weight": round(self.carl_weight, 2), "overall_accuracy": round(self.report["overall_accuracy"], 4),
                "mean_iou": round(self.miou, 4), "seconds": round(self.seconds, 1)}


def fit_candidates(train: PixelSample, val: PixelSample, k: int, class_names: list[str],
                   columns: Callable[[str], slice], carl_columns: slice, seed: int = 0,
                   specs: tuple[CandidateSpec, ...] = CANDIDATES,
                   log: Callable[[str], None] | None = None) -> list[Candidate]:
    """Fit every candidate on ``train`` and score it on ``val`` (a head used by several candidates is fitted once).

    Args:
        train, val: pixel features (the full stack) and classes.
        columns: ``columns(which) -> slice`` of the feature stack.
        carl_columns: the slice holding CARL's K class probabilities.
    """
    say = log or (lambda _m: None)
    p_carl = val.features[:, carl_columns]
    fitted: dict[tuple[str, str], tuple[nn.Module, np.ndarray]] = {}
    out = []
    for spec in specs:
        t = time.perf_counter()
        cols = columns(spec.columns or "all")
        heads, probs = [], []
        for kind in spec.heads:
            key = (kind, spec.columns or "all")
            if key not in fitted:
                head = fit_head(kind, train.features[:, cols], train.labels, k, seed)
                fitted[key] = (head, head_probabilities(head, val.features[:, cols]))
            heads.append(fitted[key][0])
            probs.append(fitted[key][1])
        p = p_carl if not probs else spec.carl_weight * p_carl + (1 - spec.carl_weight) * sum(probs) / len(probs)
        rep = segmentation_report(confusion_matrix(val.labels, p.argmax(1), k), class_names)
        n_feat = int(train.features[:, cols].shape[1]) if spec.heads else 0
        cand = Candidate(spec, heads, rep, time.perf_counter() - t, n_feat, p.argmax(1))
        say(f"candidate {spec.name}: held-out mIoU {cand.miou:.3f} ({cand.seconds:.0f} s)")
        out.append(cand)
    return out


class HeldOut:
    """The held-out pixels' classes (N,), their polygons (N,) and K, for comparing two candidates' predictions by
    resampling whole polygons (:meth:`share_better`)."""

    def __init__(self, labels: np.ndarray, groups: np.ndarray, k: int, seed: int = 0) -> None:
        self.labels, self.k = np.asarray(labels), int(k)
        self.groups = np.unique(np.asarray(groups), return_inverse=True)[1].ravel()
        self.n_groups = int(self.groups.max()) + 1 if len(self.groups) else 0
        rng = np.random.default_rng(seed + 11)
        self.draws = rng.integers(0, max(1, self.n_groups), size=(BOOTSTRAP_DRAWS, max(1, self.n_groups)))

    def _per_group(self, pred: np.ndarray) -> np.ndarray:
        """(G, K, K) confusion matrix of each polygon."""
        k = self.k
        idx = (self.groups * k + self.labels) * k + np.asarray(pred)
        return np.bincount(idx, minlength=self.n_groups * k * k).reshape(self.n_groups, k, k)

    def share_better(self, pred_a: np.ndarray, pred_b: np.ndarray, gain: float = MIN_GAIN) -> float:
        """Share of the resamples in which ``pred_a``'s mIoU beats ``pred_b``'s by at least ``gain``."""
        if self.n_groups == 0:
            return 0.0
        cm_a, cm_b = self._per_group(pred_a), self._per_group(pred_b)
        wins = 0
        for draw in self.draws:
            a, b = cm_a[draw].sum(0), cm_b[draw].sum(0)
            wins += _miou(a) >= _miou(b) + gain
        return wins / len(self.draws)


def _miou(cm: np.ndarray) -> float:
    tp = np.diag(cm).astype(np.float64)
    denom = cm.sum(0) + cm.sum(1) - tp
    present = denom > 0
    return float((tp[present] / denom[present]).mean()) if present.any() else 0.0


def choose(candidates: list[Candidate], select: str = "auto", held_out: HeldOut | None = None
           ) -> tuple[Candidate, str]:
    """The candidate to keep and why (one line).

    ``select="auto"``: :data:`DEFAULT_CANDIDATE`, unless another CARL candidate is clearly better on the held-out
    polygons (then the best of those), and unless a plain forest is clearly better than the CARL candidate so chosen
    (``held_out`` decides "clearly": :data:`CONFIDENCE` of the polygon resamples; without it, a mIoU lead of more
    than :data:`MIN_GAIN` counts). A candidate name keeps that candidate.
    """
    by_name = {c.name: c for c in candidates}
    if select != "auto":
        return by_name[select], f"{select} was asked for"

    def clearly(a: Candidate, b: Candidate) -> float:
        """Share of resamples where ``a`` beats ``b`` (1 or 0 from the plain scores without ``held_out``)."""
        if held_out is None or a.prediction is None or b.prediction is None:
            return 1.0 if a.miou > b.miou + MIN_GAIN else 0.0
        return held_out.share_better(a.prediction, b.prediction)

    with_carl = sorted((c for c in candidates if c.spec.uses_carl), key=lambda c: -c.miou)
    plain = sorted((c for c in candidates if not c.spec.uses_carl), key=lambda c: -c.miou)
    pick = by_name.get(DEFAULT_CANDIDATE) or (with_carl[0] if with_carl else None)
    why = "the default"
    if pick is not None:
        for other in with_carl:
            if other is not pick and (share := clearly(other, pick)) >= CONFIDENCE:
                why = f"better than {pick.name} on the held-out polygons in {100 * share:.0f} % of their resamples"
                pick = other
                break
    for forest in plain:
        share = clearly(forest, pick) if pick is not None else 1.0
        if pick is None or share >= CONFIDENCE:
            why = (f"{forest.name}, a plain forest, beat " + (f"{pick.name} ({pick.miou:.3f})" if pick else "CARL")
                   + f" on the held-out polygons in {100 * share:.0f} % of their resamples (mIoU {forest.miou:.3f}): "
                   "kept, since it maps these polygons better (it needs the training bands; the CARL part still maps "
                   "other band sets)")
            return forest, why
    assert pick is not None
    why = f"{why}, held-out mIoU {pick.miou:.3f}"
    if plain:
        best = plain[0]
        why += f"; best plain forest {best.name} {best.miou:.3f}"
        if best.miou > pick.miou:
            share = clearly(best, pick)
            why += (f", ahead in {100 * share:.0f} % of the resamples of the held-out polygons (not clearly better; "
                    f"keep it with select='{best.name}' / --select {best.name} if these polygons are representative)")
    return pick, why


def near_chance(report: dict[str, Any], k: int) -> str | None:
    """A one-line warning when a held-out ``report`` is close to what guessing scores (mIoU below twice the
    1 / (2K - 1) of uniform guessing), else None."""
    chance = 1.0 / max(1, 2 * k - 1)
    if k < 2 or report["mean_iou"] >= 2 * chance:
        return None
    return (f"the held-out polygons score near chance (mIoU {report['mean_iou']:.2f}, OA "
            f"{report['overall_accuracy']:.2f}; guessing among {k} classes gives mIoU about {chance:.2f}): the classes "
            "are hardly told apart with these polygons and bands. Check the label field, draw more (and larger) "
            "polygons per class, or give pretrained weights (--weights)")


def holdout_caveat(how: dict[str, str]) -> str | None:
    """A one-line note when some classes held out blocks of their one polygon instead of whole polygons (``how``:
    :attr:`~carl_geo.polygon_training.chips.HoldoutSplit.how`): their held-out pixels neighbour their training pixels,
    so the scores, and the choice among candidates, say little about the map away from the polygons. None when no
    class was split into blocks."""
    single = [name for name, h in how.items() if h == "blocks"]
    if not single:
        return None
    which = "every class has" if len(single) == len(how) else (
        f"{len(single)} of {len(how)} classes ({', '.join(single[:4])}{', ...' if len(single) > 4 else ''}) have")
    return (f"{which} a single polygon, so the held-out pixels of those classes are blocks "
            "of their own training polygons: the scores above (and the choice among the candidates) say how well "
            "those polygons' surroundings are recognised, not how the map does elsewhere; draw two or more polygons "
            "per class, apart, for scores that measure the map")


def evidence_table(rows: list[dict[str, Any]], kept: str) -> list[str]:
    """The evidence table as text lines (fixed-width columns)."""
    lines = [f"{'candidate':14s} {'features':38s} {'heads':11s} {'OA':>6s} {'mIoU':>6s} {'s':>4s}"]
    for r in rows:
        feats = f"{r['features']} ({r['n_features']})" if r["n_features"] else r["features"]
        mark = "  <- kept" if r["name"] == kept else ""
        lines.append(f"{r['name']:14s} {feats:38s} {r['head']:11s} {r['overall_accuracy']:6.3f} "
                     f"{r['mean_iou']:6.3f} {r['seconds']:4.0f}{mark}")
    return lines
