"""Optimizer and lr schedule from ``cfg.SOLVER``: the paper's SGD + step schedule by default, and
the AdamW + cosine (+ layer-wise lr decay) recipes that ConvNeXt, Swin and ViT need.

A *recipe* is a set of ``SOLVER`` keys, shipped as a config file (``rdet/configs/recipe_*.yaml``)
whose ``SOLVER.RECIPE`` names it; records store that name together with the settings that ran
(:func:`describe`), so a run says which recipe it used even if a key was overridden.

* ``SOLVER.OPTIMIZER``: ``sgd`` (momentum ``SOLVER.MOMENTUM``; the paper) or ``adamw`` (betas
  ``SOLVER.BETAS``); weight decay ``SOLVER.WEIGHT_DECAY``, on every parameter unless
  ``SOLVER.NO_WD_1D`` exempts biases, norm weights, position embeddings and tokens (timm's rule:
  1-d tensors and the model's ``no_weight_decay()`` names).
* ``SOLVER.LR_SCHEDULE``: ``step`` (x ``GAMMA`` every ``LR_STEP_EPOCHS``; the paper) or ``cosine``
  (from the base lr to ``MIN_LR_FACTOR`` x it at the last epoch), after ``WARMUP_EPOCHS`` epochs of
  linear warm-up from ``WARMUP_FACTOR`` x the base lr. rdet's trainer steps the schedule once per
  epoch, so lrs change per epoch, not per iteration.
* ``SOLVER.LAYER_DECAY`` < 1 (timm models only): layer-wise lr decay (BEiT, MAE), the lr of layer
  ``i`` of ``L`` scaled by ``LAYER_DECAY ** (L - i)`` with timm's own grouping of a model's
  parameters into layers (``timm.optim.param_groups_layer_decay``; ViT-T/S/B: embeddings 0, block
  ``b`` layer ``b + 1``, the last block and final norm at scale 1); the new head trains at the lr.
"""
from __future__ import annotations

import logging
import math
from typing import Any, Dict, Iterable, List, Optional

import torch

from rdet.config.schema import check_value
from rdet.core.errors import ConfigError

logger = logging.getLogger(__name__)



def _inner(model):
    return getattr(model, "module", model)  # DDP -> the Classifier


def _no_wd_names(model) -> set:
    """Names (as in ``model.named_parameters()``) of timm's no-weight-decay tensors in its body."""
    body = getattr(_inner(model), "body", None)
    names = body.no_weight_decay() if body is not None and hasattr(body, "no_weight_decay") else ()
    return {f"body.{n}" for n in names}


def param_groups(params: Iterable[torch.nn.Parameter], cfg, model=None) -> List[Dict[str, Any]]:
    """Parameter groups with ``weight_decay`` and ``lr_scale`` (1 unless layer decay is on).

    ``params`` are the parameters to train; ``model`` (an rdet ``Classifier``) gives their names and
    the layer structure. Layer decay applies when all of the model's trainable parameters are
    trained (full-network transfer, pretraining); a head trained alone is the top layer (scale 1).
    """
    s = cfg.SOLVER
    params = [p for p in params if p.requires_grad]
    wd = float(s.WEIGHT_DECAY)
    inner = _inner(model) if model is not None else None
    trains_all = inner is not None and {id(p) for p in params} == {
        id(p) for p in inner.parameters() if p.requires_grad}
    if s.LAYER_DECAY < 1 and trains_all:
        body = inner.body
        if not hasattr(body, "group_matcher"):
            raise ConfigError(f"SOLVER.LAYER_DECAY {s.LAYER_DECAY:g}: {inner.spec.name} is not a timm model (no layer "
                              f"structure to decay over); use SOLVER.LAYER_DECAY 1.0")
        from timm.optim import param_groups_layer_decay

        groups = param_groups_layer_decay(body, weight_decay=wd, layer_decay=float(s.LAYER_DECAY),
                                          no_weight_decay_list=body.no_weight_decay()
                                          if hasattr(body, "no_weight_decay") else ())
        groups = [dict(g, params=list(g["params"])) for g in groups if g["params"]]
        head_wd = [p for p in inner.head.parameters() if p.ndim > 1]
        head_no = [p for p in inner.head.parameters() if p.ndim <= 1]
        groups += [{"params": head_wd, "weight_decay": wd, "lr_scale": 1.0},
                   {"params": head_no, "weight_decay": 0.0, "lr_scale": 1.0}]
        return [g for g in groups if g["params"]]
    if not s.NO_WD_1D:
        return [{"params": params, "weight_decay": wd, "lr_scale": 1.0}]
    names = {id(p): n for n, p in inner.named_parameters()} if inner is not None else {}
    skip = _no_wd_names(model) if model is not None else set()
    no = [p for p in params if p.ndim <= 1 or names.get(id(p)) in skip]
    yes = [p for p in params if not (p.ndim <= 1 or names.get(id(p)) in skip)]
    return [g for g in ({"params": yes, "weight_decay": wd, "lr_scale": 1.0},
                        {"params": no, "weight_decay": 0.0, "lr_scale": 1.0}) if g["params"]]


def build_optimizer(params: Iterable[torch.nn.Parameter], cfg, lr: Optional[float] = None,
                    model=None) -> torch.optim.Optimizer:
    """The optimizer of ``cfg.SOLVER`` over ``params`` (``lr``: the base lr, default SOLVER.BASE_LR)."""
    s = cfg.SOLVER
    check_value("SOLVER.OPTIMIZER", s.OPTIMIZER)  # the key's rule, in case cfg skipped check_cfg
    base = float(s.BASE_LR if lr is None else lr)
    groups = param_groups(params, cfg, model)
    for g in groups:
        g["lr"] = base * g["lr_scale"]
    if s.OPTIMIZER == "sgd":
        return torch.optim.SGD(groups, lr=base, momentum=s.MOMENTUM, weight_decay=float(s.WEIGHT_DECAY))
    return torch.optim.AdamW(groups, lr=base, betas=tuple(float(b) for b in s.BETAS),
                             weight_decay=float(s.WEIGHT_DECAY))


def lr_factor(epoch: int, cfg) -> float:
    """The lr during ``epoch`` (0-based) as a fraction of the base lr."""
    s = cfg.SOLVER
    warm = int(s.WARMUP_EPOCHS)
    if epoch < warm:
        return s.WARMUP_FACTOR + (1.0 - s.WARMUP_FACTOR) * epoch / warm
    if s.LR_SCHEDULE == "step":
        return s.GAMMA ** (epoch // s.LR_STEP_EPOCHS)
    span = max(1, int(s.EPOCHS) - warm - 1)  # the last epoch runs at MIN_LR_FACTOR
    t = min(1.0, (epoch - warm) / span)
    return s.MIN_LR_FACTOR + (1.0 - s.MIN_LR_FACTOR) * 0.5 * (1.0 + math.cos(math.pi * t))


def build_scheduler(optimizer, cfg) -> torch.optim.lr_scheduler.LRScheduler:
    """Stepped once per epoch by the trainer. The paper's step schedule without warm-up is torch's
    StepLR (as rdet always built it); anything else a LambdaLR of :func:`lr_factor`, whose state
    (the epoch count) resumes exactly."""
    s = cfg.SOLVER
    check_value("SOLVER.LR_SCHEDULE", s.LR_SCHEDULE)
    if s.LR_SCHEDULE == "step" and int(s.WARMUP_EPOCHS) == 0:
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=s.LR_STEP_EPOCHS, gamma=s.GAMMA)
    solver = cfg.SOLVER.clone()  # the factor reads a frozen copy: later edits of cfg cannot change a run
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda e: lr_factor(e, _Cfg(solver)))


class _Cfg:
    def __init__(self, solver):
        self.SOLVER = solver


def describe(cfg) -> Dict[str, Any]:
    """What ran, for records: the recipe's name and the settings that define it."""
    s = cfg.SOLVER
    out = {"name": s.RECIPE, "optimizer": s.OPTIMIZER, "lr_schedule": s.LR_SCHEDULE, "base_lr": s.BASE_LR,
           "weight_decay": s.WEIGHT_DECAY, "no_wd_1d": s.NO_WD_1D, "warmup_epochs": s.WARMUP_EPOCHS,
           "layer_decay": s.LAYER_DECAY, "batch_size": s.BATCH_SIZE, "epochs": s.EPOCHS}
    if s.OPTIMIZER == "sgd":
        out["momentum"] = s.MOMENTUM
    else:
        out["betas"] = list(s.BETAS)
    if s.LR_SCHEDULE == "step":
        out.update(lr_step_epochs=s.LR_STEP_EPOCHS, gamma=s.GAMMA)
    else:
        out["min_lr_factor"] = s.MIN_LR_FACTOR
    return out


def recipe_note(cfg, spec) -> Optional[str]:
    """A line when the configured optimizer is not the one the arch's family trains with (e.g. the
    paper's SGD on a ViT), naming the config file of its fine-tuning recipe; ``None`` otherwise."""
    wanted = "sgd" if spec.recipe == "paper_sgd" else "adamw"
    if cfg.SOLVER.OPTIMIZER == wanted:
        return None
    hint = "the defaults" if spec.recipe == "paper_sgd" else f"--config-file configs/recipe_{spec.recipe}.yaml"
    return (f"{spec.name} ({spec.family}) is meant to train with {wanted} (recipe {spec.recipe}: {hint}); "
            f"running {cfg.SOLVER.OPTIMIZER} (recipe {cfg.SOLVER.RECIPE})")
