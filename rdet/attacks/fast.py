"""Cheap training attacks: FGSM from a random start and the "free" perturbation update.

* ``fgsm_rs`` -- Wong, Rice, Kolter, "Fast is better than free" (ICLR 2020): start at a point drawn
  uniformly from the eps-ball, take ONE gradient step of ``step_factor * eps`` (Linf: the sign of
  the gradient; L2: the gradient scaled to unit L2 norm), project back onto the ball and the [0, 1]
  box. One forward-backward instead of PGD-3's three.
* ``free_update`` -- Shafahi et al., "Adversarial training for free!" (NeurIPS 2019): the input
  gradient of the training step itself moves the perturbation by ``eps`` (sign / unit-L2
  direction), which is then projected; the caller carries ``delta`` from replay to replay and from
  minibatch to minibatch (``rdet.engine.steps.FreeStep``).

Inputs are RGB images in [0, 1], ``(N, C, H, W)``; eps is a pixel-space radius as in ``pgd``.
"""
from __future__ import annotations

import contextlib
from typing import Callable, Optional

import torch

from rdet.attacks.pgd import NORMS, _input_grad, _per_sample_norm, project, random_start


def _direction(grad: torch.Tensor, norm: str) -> torch.Tensor:
    """The steepest-ascent unit step for ``norm`` (NaN/inf from a skipped fp16 step become 0)."""
    grad = torch.nan_to_num(grad, nan=0.0, posinf=0.0, neginf=0.0)
    if norm == "linf":
        return grad.sign()
    return grad / _per_sample_norm(grad).clamp_min(1e-12)


def fgsm_rs(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, norm: str = "linf",
            step_factor: float = 1.25, autocast: Optional[Callable] = None) -> torch.Tensor:
    """Adversarial examples by one FGSM step of ``step_factor * eps`` from a uniform random start."""
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}")
    if eps <= 0:
        return x
    net = getattr(model, "module", model)  # DDP: attack the bare module (no gradient sync)
    x = x.detach()
    start = random_start(x, eps, norm)
    _, grad = _input_grad(net, start, y, autocast or contextlib.nullcontext)
    return project(start + step_factor * eps * _direction(grad, norm), x, eps, norm).detach()


def free_update(delta: torch.Tensor, grad: torch.Tensor, x: torch.Tensor, eps: float, norm: str) -> torch.Tensor:
    """One "free" perturbation step: ``delta + eps * direction(grad)``, kept inside the eps-ball and
    such that ``x + delta`` stays in [0, 1]. Returns the new ``delta`` (detached)."""
    moved = x + delta.detach() + eps * _direction(grad.detach(), norm)
    return (project(moved, x, eps, norm) - x).detach()
