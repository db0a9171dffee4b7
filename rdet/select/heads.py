"""Linear heads trained on cached features, one candidate per hyperparameter value.

* ``sgd``: the paper's fixed-feature head (its optimizer, batch size and schedule from the config)
  at each learning rate of ``TRANSFER.LR_GRID``, on the K cached augmented views
  (``rdet.transfer.train_head_on_features``).
* ``logreg``: multinomial logistic regression fitted to convergence by full-batch L-BFGS on the
  centre-crop features, at each L2 penalty of ``SELECT.LOGREG_L2`` (Kornblith, Shlens and Le,
  "Do Better ImageNet Models Transfer Better?", CVPR 2019, who tune the penalty on a validation
  split). Features are standardised with the training part's mean and std (L-BFGS converges in
  far fewer steps on unit-scale inputs); the fitted layer is folded back so it reads raw features.

Every candidate is scored on the validation part (which chooses) and on the test set (reported).
"""
from __future__ import annotations

import time
from typing import Dict, List

import torch
import torch.nn.functional as F

from rdet.transfer import evaluate_features, train_head_on_features


def _scores(head, feats: Dict[str, torch.Tensor], num_classes: int, metric: str) -> Dict[str, float]:
    return {split: evaluate_features(head, feats[split], feats[f"{split}_labels"], num_classes)[metric]
            for split in ("val", "test")}


def sgd_candidates(feats, num_classes: int, cfg, metric: str, rt) -> List[Dict]:
    out = []
    for lr in cfg.TRANSFER.LR_GRID:
        start = time.time()
        torch.manual_seed(cfg.SEED)
        head = torch.nn.Linear(feats["train_views"][0].shape[1], num_classes)
        train_head_on_features(head, feats["train_views"], feats["train_labels"], cfg, float(lr), cfg.SEED, rt=rt)
        out.append({"head": "sgd", "lr": float(lr), **_scores(head, feats, num_classes, metric),
                    "time_s": time.time() - start})
    return out


def fit_logreg(x: torch.Tensor, y: torch.Tensor, num_classes: int, l2_grid, max_iter: int):
    """Yield ``(l2, Linear on raw features, seconds)`` for each penalty, strongest first, each fit
    warm-started from the previous one."""
    mean, std = x.mean(0), x.std(0).clamp_min(1e-6)
    z = (x - mean) / std
    lin = torch.nn.Linear(x.shape[1], num_classes).to(x.device)
    torch.nn.init.zeros_(lin.weight)
    torch.nn.init.zeros_(lin.bias)
    for l2 in sorted((float(v) for v in l2_grid), reverse=True):
        start = time.time()
        opt = torch.optim.LBFGS(lin.parameters(), lr=1.0, max_iter=max_iter, history_size=20,
                                tolerance_grad=1e-6, tolerance_change=1e-9, line_search_fn="strong_wolfe")

        def closure():
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(lin(z), y) + 0.5 * l2 * lin.weight.pow(2).sum()
            loss.backward()
            return loss

        with torch.enable_grad():
            opt.step(closure)
        folded = torch.nn.Linear(x.shape[1], num_classes).to(x.device)
        with torch.no_grad():
            folded.weight.copy_(lin.weight / std)
            folded.bias.copy_(lin.bias - folded.weight @ mean)
        yield l2, folded, time.time() - start


def logreg_candidates(feats, num_classes: int, cfg, metric: str) -> List[Dict]:
    out = []
    for l2, head, secs in fit_logreg(feats["train_center"], feats["train_labels"], num_classes,
                                     cfg.SELECT.LOGREG_L2, cfg.SELECT.LOGREG_MAX_ITER):
        out.append({"head": "logreg", "l2": l2, **_scores(head, feats, num_classes, metric), "time_s": secs})
    return out


def describe(c: Dict) -> str:
    """``sgd lr=0.01`` / ``logreg l2=1e-04``."""
    return f"sgd lr={c['lr']:g}" if c["head"] == "sgd" else f"logreg l2={c['l2']:.0e}"
