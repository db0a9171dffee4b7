"""How well an estimator's ranking of backbones agrees with their fine-tuned accuracy.

Three numbers, as the transferability literature reports them:

* Kendall tau (tau-b, ties counted as neither concordant nor discordant): the share of model
  pairs ordered alike minus the share ordered oppositely, in [-1, 1];
* weighted tau (Vigna 2015, ``scipy.stats.weightedtau``): the same with each pair weighted by the
  hyperbolic weight 1/(r + 1) of its better rank r, averaged over ranking by either variable --
  a swap among the top models costs more than one among the worst; the weighting LogME, SFDA and
  their followers use;
* top-1 regret: accuracy of the best model minus that of the estimator's first choice, in the
  accuracy's own unit (percentage points for rdet's records); 0 when the first choice is the best.
  A tie in the estimator's first place is resolved against it (the worse of the tied models), so
  a constant estimator cannot look good.

Pairs with a missing score (``None``: an estimator that could not score a model; NaN) are dropped,
and how many were used is returned beside the statistics; -inf is a score (the worst).
"""
from __future__ import annotations

import math
from typing import Dict, Optional, Sequence


def _pairs(scores: Sequence[Optional[float]], truth: Sequence[Optional[float]]):
    kept = [(float(s), float(t)) for s, t in zip(scores, truth) if s is not None and t is not None
            and not math.isnan(float(s)) and not math.isnan(float(t))]  # -inf (e.g. LogME of dead features) ranks last
    return [s for s, _ in kept], [t for _, t in kept]


def kendall_tau(scores: Sequence[float], truth: Sequence[float]) -> float:
    from scipy.stats import kendalltau

    s, t = _pairs(scores, truth)
    return float(kendalltau(s, t)[0]) if len(s) >= 2 else float("nan")


def weighted_tau(scores: Sequence[float], truth: Sequence[float]) -> float:
    from scipy.stats import weightedtau

    s, t = _pairs(scores, truth)
    return float(weightedtau(s, t)[0]) if len(s) >= 2 else float("nan")  # hyperbolic weigher: scipy's default


def top1_regret(scores: Sequence[float], truth: Sequence[float]) -> float:
    s, t = _pairs(scores, truth)
    if not s:
        return float("nan")
    top = max(s)
    return max(t) - min(ti for si, ti in zip(s, t) if si == top)


def agreement(scores: Sequence[Optional[float]], truth: Sequence[Optional[float]]) -> Dict[str, float]:
    """``{"tau", "weighted_tau", "regret", "n"}`` of one estimator against one ground truth."""
    s, t = _pairs(scores, truth)
    return {"tau": kendall_tau(s, t), "weighted_tau": weighted_tau(s, t), "regret": top1_regret(s, t), "n": len(s)}
