"""One training epoch and one evaluation pass, shared by pretraining and transfer.

Input batches are RGB in [0, 1] (normalisation is inside the model). ``perturb(model, x, y) -> x``
is applied before the forward pass: adversarial training and robust evaluation pass a PGD
closure; it may need input gradients, so :func:`evaluate` only disables autograd around the
final forward. The caller chooses train/eval modes (fixed-feature transfer keeps the frozen body
in eval mode while training the head).
"""
from __future__ import annotations

from typing import Callable, Dict, Optional

import torch
import torch.nn.functional as F
from tqdm import tqdm

from rdet.engine.runtime import Runtime
from rdet.metrics import confusion_matrix, scores_from_confusion

Perturb = Callable[[torch.nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]


def train_one_epoch(model: torch.nn.Module, loader, optimizer: torch.optim.Optimizer, rt: Runtime, epoch: int = 0,
                    perturb: Optional[Perturb] = None, writer=None, scaler=None, log_every: int = 20,
                    desc: str = "train") -> Dict[str, float]:
    """SGD over ``loader`` once; returns mean loss and accuracy (%) over all processes."""
    totals = torch.zeros(3, dtype=torch.float64)  # loss sum, correct, count
    steps = len(loader)
    bar = tqdm(loader, desc=f"{desc} ep{epoch}", leave=False, disable=None if rt.is_main else True, dynamic_ncols=True)
    for i, (x, y) in enumerate(bar):
        x, y = rt.inputs(x), y.to(rt.device, non_blocking=True)
        if perturb is not None:
            x = perturb(model, x, y)
        with rt.autocast():
            logits = model(x)
            loss = F.cross_entropy(logits.float(), y)
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            optimizer.step()
        n = y.numel()
        totals += torch.tensor([loss.item() * n, (logits.argmax(1) == y).sum().item(), n], dtype=torch.float64)
        if rt.is_main:
            bar.set_postfix(loss=f"{loss.item():.3f}")
            if writer is not None and i % max(1, log_every) == 0:
                writer.add_scalar(f"{desc}/loss", loss.item(), epoch * steps + i)
                writer.add_scalar(f"{desc}/lr", optimizer.param_groups[0]["lr"], epoch * steps + i)
    rt.all_reduce(totals)
    return {"loss": float(totals[0] / totals[2]), "acc": float(100 * totals[1] / totals[2])}


def evaluate(model: torch.nn.Module, loader, rt: Runtime, num_classes: Optional[int] = None,
             perturb: Optional[Perturb] = None, desc: str = "eval") -> Dict[str, float]:
    """``{'top1', 'mean_per_class'}`` in percent and mean ``loss``, over all processes' shards."""
    model.eval()
    if num_classes is None:
        num_classes = _num_classes(model)
    conf = torch.zeros(num_classes, num_classes, dtype=torch.float64)
    loss_sum = torch.zeros(2, dtype=torch.float64)
    for x, y in tqdm(loader, desc=desc, leave=False, disable=None if rt.is_main else True, dynamic_ncols=True):
        x, y = rt.inputs(x), y.to(rt.device, non_blocking=True)
        if perturb is not None:
            x = perturb(model, x, y)
        with torch.no_grad(), rt.autocast():
            logits = model(x).float()
        loss_sum += torch.tensor([F.cross_entropy(logits, y, reduction="sum").item(), y.numel()], dtype=torch.float64)
        conf += confusion_matrix(logits.argmax(1).cpu(), y.cpu(), num_classes)
    rt.all_reduce(conf)
    rt.all_reduce(loss_sum)
    out = scores_from_confusion(conf)
    out["loss"] = float(loss_sum[0] / loss_sum[1].clamp_min(1))
    return out


def _num_classes(model: torch.nn.Module) -> int:
    inner = getattr(model, "module", model)
    return inner.head.out_features
