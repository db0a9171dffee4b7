"""Projected gradient descent under L2 and Linf (Madry et al.), on RGB images in [0, 1].

Normalisation lives inside the model, so ``eps`` is a radius in pixel space as the paper uses it.
Gradients are taken with ``torch.autograd.grad`` with respect to the input only, so parameters'
``.grad`` are never touched and the attack can run in the middle of a training step. The model is
used in whatever mode the caller left it. Adversarial training (``rdet.engine.steps``) puts it in
eval mode for the attack by default, as the robustness library's ``AttackerModel`` does
(BatchNorm normalises with its running statistics and updates nothing), and back to train mode
for the update; robust evaluation runs in eval mode throughout.
"""
from __future__ import annotations

import contextlib
from typing import Callable, Optional

import torch
import torch.nn.functional as F

NORMS = ("l2", "linf")


def _per_sample_norm(t: torch.Tensor) -> torch.Tensor:
    return t.flatten(1).norm(dim=1).view(-1, *([1] * (t.dim() - 1)))


def project(x_adv: torch.Tensor, x: torch.Tensor, eps: float, norm: str) -> torch.Tensor:
    """Nearest point of the eps-ball around ``x`` (per sample), then of the [0, 1] box."""
    delta = x_adv - x
    if norm == "l2":
        delta = delta * (eps / _per_sample_norm(delta).clamp_min(1e-12)).clamp(max=1.0)
    else:
        delta = delta.clamp(-eps, eps)
    return (x + delta).clamp(0.0, 1.0)


def random_start(x: torch.Tensor, eps: float, norm: str, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """A point drawn uniformly from the eps-ball (L2: uniform direction, radius eps * U^(1/d)),
    from ``generator`` (on ``x``'s device) or else torch's global generator."""
    if norm == "linf":
        delta = torch.empty_like(x).uniform_(-eps, eps, generator=generator)
    else:
        d = x[0].numel()
        direction = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        direction = direction / _per_sample_norm(direction).clamp_min(1e-12)
        radius = eps * torch.rand(x.shape[0], *([1] * (x.dim() - 1)), generator=generator, device=x.device,
                                  dtype=x.dtype) ** (1.0 / d)
        delta = direction * radius
    return (x + delta).clamp(0.0, 1.0)


def _input_grad(model, x, y, autocast):
    """Per-sample losses and their gradient w.r.t. ``x`` (autograd on even under no_grad)."""
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        losses, _ = _losses(model, x, y, autocast)
        (grad,) = torch.autograd.grad(losses.sum(), x)
    return losses.detach(), grad


def _losses(model, x, y, autocast) -> torch.Tensor:
    with autocast():
        logits = model(x)
    return F.cross_entropy(logits.float(), y, reduction="none"), logits


def pgd(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, norm: str = "l2", steps: int = 3,
        step_size: Optional[float] = None, rand_init: bool = False, targeted: bool = False, keep_best: bool = False,
        restarts: int = 1, autocast: Callable = None, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Adversarial examples for ``(x, y)``; ``x``: ``(N, C, H, W)`` in [0, 1].

    ``step_size`` defaults to ``2.5 * eps / steps`` (enough to reach the boundary from any start).
    ``targeted``: ``y`` are target labels and the loss is minimised. ``keep_best``: return, per
    sample, the iterate with the highest (targeted: lowest) loss rather than the last one.
    ``restarts`` > 1 repeats the attack from random starts and keeps, per sample, the most
    successful run (the first one starts at ``x`` unless ``rand_init``). Random starts draw from
    ``generator`` when given (the overfitting guard's own), else from torch's global generator.
    """
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}")
    if eps <= 0 or steps <= 0:
        return x
    net = getattr(model, "module", model)  # DDP: attack the bare module (no gradient sync)
    autocast = autocast or contextlib.nullcontext
    step = 2.5 * eps / steps if step_size is None else step_size
    sign = -1.0 if targeted else 1.0
    x = x.detach()
    best, best_score = x, None
    for r in range(max(1, restarts)):
        x_adv = random_start(x, eps, norm, generator) if (rand_init or r > 0) else x.clone()
        run_best, run_score = x_adv, None
        for _ in range(steps):
            losses, grad = _input_grad(net, x_adv, y, autocast)
            if keep_best:
                run_best, run_score = _keep(run_best, run_score, x_adv, sign * losses)
            grad = sign * grad
            if norm == "l2":
                x_adv = x_adv + step * grad / _per_sample_norm(grad).clamp_min(1e-12)
            else:
                x_adv = x_adv + step * grad.sign()
            x_adv = project(x_adv, x, eps, norm)
        if keep_best or restarts > 1:
            with torch.no_grad():
                losses, logits = _losses(net, x_adv, y, autocast)
            run_best, run_score = _keep(run_best, run_score, x_adv, sign * losses)
            if restarts > 1:  # success dominates loss across restarts
                success = (logits.argmax(1) == y) if targeted else (logits.argmax(1) != y)
                run_score = run_score + 1e6 * success.float()
            best, best_score = _keep(best, best_score, run_best, run_score)
        else:
            best = x_adv
    return best.detach()


def _keep(best, best_score, cand, cand_score):
    if best_score is None:
        return cand, cand_score
    better = cand_score > best_score
    mask = better.view(-1, *([1] * (cand.dim() - 1)))
    return torch.where(mask, cand, best), torch.where(better, cand_score, best_score)


def make_perturb(eps: float, norm: str = "l2", steps: int = 3, step_size: Optional[float] = None,
                 rand_init: bool = False, restarts: int = 1, keep_best: bool = False, autocast: Callable = None,
                 generator: Optional[torch.Generator] = None):
    """A ``perturb(model, x, y) -> x_adv`` closure for ``rdet.engine`` (training or evaluation)."""
    def perturb(model, x, y):
        return pgd(model, x, y, eps, norm, steps, step_size, rand_init, keep_best=keep_best, restarts=restarts,
                   autocast=autocast, generator=generator)
    return perturb
