"""Training steps: how one batch becomes optimizer updates. A step is called as
``step(trainer, x, y) -> (logits, loss)`` (detached, for the epoch statistics) and updates the
weights through ``trainer.optimize(loss)``.

BatchNorm rule, the same for every adversarial method: running statistics are updated exactly once
per optimizer step, by the forward pass whose loss is optimised. PGD and FGSM-RS therefore attack
with the model in eval mode by default (``ADV.ATTACK_MODE eval``, as the robustness library's
``AttackerModel`` does: BN normalises with its running statistics and updates nothing), then update
in train mode. ``ADV.ATTACK_MODE train`` attacks in train mode instead (every attack forward then
updates the statistics). Free training has no separate attack pass: its perturbation gradient is a
by-product of the training forward itself (that is what makes it free), so it keeps the rule by
construction.
"""
from __future__ import annotations

import contextlib
import math
from typing import Callable, Iterator, Optional, Tuple

import torch
import torch.nn.functional as F

from rdet.attacks import fgsm_rs, free_update, pgd
from rdet.config.schema import check_value



@contextlib.contextmanager
def eval_mode(model: torch.nn.Module) -> Iterator[None]:
    """Every submodule in eval mode inside, each restored to its own previous mode after (a frozen
    body stays in eval mode, a trained head in train mode)."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for m, training in modes:
            m.training = training


def _forward_loss(trainer, x, y):
    with trainer.rt.autocast():
        logits = trainer.ddp(x)
    return logits, F.cross_entropy(logits.float(), y)


class StandardStep:
    def __call__(self, trainer, x, y) -> Tuple[torch.Tensor, torch.Tensor]:
        logits, loss = _forward_loss(trainer, x, y)
        trainer.optimize(loss)
        return logits.detach(), loss.detach()


class AttackStep(StandardStep):
    """Replace the batch by ``attack(model, x, y)`` (in eval mode unless ``attack_mode`` is
    "train"), then a standard step."""

    def __init__(self, attack: Callable, attack_mode: str = "eval"):
        self.attack, self.attack_mode = attack, attack_mode

    def __call__(self, trainer, x, y):
        with eval_mode(trainer.ddp) if self.attack_mode == "eval" else contextlib.nullcontext():
            x = self.attack(trainer.ddp, x, y)
        return super().__call__(trainer, x, y)


class FreeStep:
    """Shafahi et al.'s free adversarial training: the batch is replayed ``replays`` times; each
    replay is one optimizer step on ``x + delta`` whose input gradient also moves ``delta`` by
    ``eps`` (projected). ``delta`` carries over to the next batch (reset when its shape changes)
    and is saved with the checkpoint (:meth:`state_dict`, one per process), so a resumed run
    continues its perturbation. Replays stop when the run's optimizer-step budget is spent (the
    partial last pass of ``epochs`` not divisible by ``replays``)."""

    def __init__(self, eps: float, norm: str, replays: int):
        self.eps, self.norm, self.replays = eps, norm, replays
        self.delta: Optional[torch.Tensor] = None

    def state_dict(self) -> dict:
        return {"delta": None if self.delta is None else self.delta.detach().cpu()}

    def load_state_dict(self, state: dict) -> None:
        self.delta = state.get("delta")

    def __call__(self, trainer, x, y):
        if self.delta is None or self.delta.shape != x.shape:
            self.delta = torch.zeros_like(x)
        self.delta = self.delta.to(x.device, x.dtype)
        for _ in range(min(self.replays, trainer.steps_left())):
            x_adv = (x + self.delta).clamp(0.0, 1.0).requires_grad_(True)
            logits, loss = _forward_loss(trainer, x_adv, y)
            trainer.optimize(loss)
            self.delta = free_update(self.delta, x_adv.grad, x, self.eps, self.norm)
        return logits.detach(), loss.detach()


def check_adv_cfg(adv) -> None:
    """One-line errors for ADV.* choices, before any work (every key's rule: ``rdet.config.schema``)."""
    for key in ("NORM", "METHOD", "ATTACK_MODE", "GUARD"):
        check_value(f"ADV.{key}", adv[key])  # each key's one rule


def build_train_step(adv, autocast: Callable):
    """The step for ``cfg.ADV``: standard at eps 0, else the method's."""
    eps = float(adv.EPS)
    if eps == 0:
        return StandardStep()
    if adv.METHOD == "free":
        return FreeStep(eps, adv.NORM, adv.FREE_REPLAYS)
    if adv.METHOD == "fgsm_rs":
        def attack(model, x, y):
            return fgsm_rs(model, x, y, eps, adv.NORM, adv.FGSM_STEP_FACTOR, autocast=autocast)
    else:
        def attack(model, x, y):
            return pgd(model, x, y, eps, adv.NORM, adv.STEPS, adv.STEP_SIZE_FACTOR * eps, adv.RANDOM_START,
                       keep_best=adv.USE_BEST, autocast=autocast)
    return AttackStep(attack, adv.ATTACK_MODE)


def passes_and_schedule(adv, epochs: int) -> Tuple[int, int]:
    """``(passes over the data, optimizer steps per batch)``. Free training replays each batch
    ADV.FREE_REPLAYS times, so it makes ceil(epochs / replays) passes, the last one partial when
    ``epochs`` is not a multiple of ``replays``: exactly ``epochs`` epochs' worth of optimizer
    steps (the trainer's ``total_steps``), with the lr schedule counted in those steps."""
    if float(adv.EPS) > 0 and adv.METHOD == "free":
        return math.ceil(epochs / adv.FREE_REPLAYS), adv.FREE_REPLAYS
    return epochs, 1


def method_meta(adv) -> dict:
    """What a checkpoint, record and converted backbone say about how it was trained."""
    eps = float(adv.EPS)
    if eps == 0:
        return {"method": "standard"}
    meta = {"method": adv.METHOD, "attack_mode": adv.ATTACK_MODE}
    if adv.METHOD == "pgd":
        meta.update(steps=adv.STEPS, step_size=adv.STEP_SIZE_FACTOR * eps, random_start=adv.RANDOM_START,
                    use_best=adv.USE_BEST)
    elif adv.METHOD == "fgsm_rs":
        meta.update(step_size=adv.FGSM_STEP_FACTOR * eps)
    else:
        meta.update(replays=adv.FREE_REPLAYS, step_size=eps)
    return meta
