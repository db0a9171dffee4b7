"""Classification metrics: top-1 and mean-per-class accuracy (the paper's metric for its
unbalanced datasets, Table 5), both from one confusion matrix so DDP shards add up exactly."""
from __future__ import annotations

from typing import Dict

import torch

def confusion_matrix(pred: torch.Tensor, target: torch.Tensor, num_classes: int) -> torch.Tensor:
    """``(C, C)`` float64 counts, rows = true class, columns = predicted class."""
    idx = target.long() * num_classes + pred.long()
    return torch.bincount(idx, minlength=num_classes * num_classes).view(num_classes, num_classes).double()


def scores_from_confusion(conf: torch.Tensor) -> Dict[str, float]:
    """top-1 = trace / total; mean-per-class = mean over classes present in the data of their
    recall (classes with no test image do not count)."""
    total = conf.sum()
    per_class = conf.sum(1)
    present = per_class > 0
    recall = conf.diag()[present] / per_class[present]
    return {"top1": float(100 * conf.trace() / total.clamp_min(1)),
            "mean_per_class": float(100 * recall.mean()) if present.any() else 0.0}
