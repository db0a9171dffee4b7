"""Accuracy of a classifier over a loader, clean or under an attack, summed over processes.

Input batches are RGB in [0, 1] (normalisation is inside the model). ``perturb(model, x, y) -> x``
is applied before the forward pass (robust evaluation passes a PGD closure); it may need input
gradients, so autograd is disabled only around the final forward. The model is put in eval mode.
"""
from __future__ import annotations

from typing import Callable, Dict, Optional

import torch
import torch.nn.functional as F
from tqdm import tqdm

from rdet.engine.runtime import Runtime
from rdet.core.metrics import confusion_matrix, scores_from_confusion

Perturb = Callable[[torch.nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]


def evaluate(model: torch.nn.Module, loader, rt: Runtime, num_classes: int, perturb: Optional[Perturb] = None,
             desc: str = "eval") -> Dict[str, float]:
    """``{'top1', 'mean_per_class'}`` in percent and mean ``loss``, over all processes' shards."""
    model.eval()
    conf = torch.zeros(num_classes, num_classes, dtype=torch.float64, device=rt.device)
    loss_sum = torch.zeros(2, dtype=torch.float64, device=rt.device)
    for x, y in tqdm(loader, desc=desc, leave=False, disable=None if rt.is_main else True, dynamic_ncols=True):
        x, y = rt.inputs(x), y.to(rt.device, non_blocking=True)
        if perturb is not None:
            x = perturb(model, x, y)
        with torch.no_grad(), rt.autocast():
            logits = model(x).float()
        loss_sum[0] += F.cross_entropy(logits, y, reduction="sum").double()
        loss_sum[1] += y.numel()
        conf += confusion_matrix(logits.argmax(1), y, num_classes)
    rt.all_reduce(conf)
    rt.all_reduce(loss_sum)
    out = scores_from_confusion(conf.cpu())
    out["loss"] = float(loss_sum[0] / loss_sum[1].clamp_min(1))
    return out
