"""Hooks of :class:`rdet.engine.trainer.EpochTrainer`: what happens between epochs.

Order matters and is the order of registration: measurements first (evaluation, guard), then the
checkpoint (so it holds them), then logging.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable, Dict, Optional

import torch

from rdet.engine.trainer import HookBase

logger = logging.getLogger(__name__)


class PeriodicEval(HookBase):
    """Evaluate after epochs 1, 1 + ``every``, 1 + 2 * ``every``, ... and after the last one
    (``every`` 0: the last only); keeps ``history['evals']`` = ``[[epoch, scores], ...]`` (1-based
    epochs). These are the robustness library's epochs (``train.py``: ``if epoch %
    args.log_iters == 0 or epoch == args.epochs - 1`` with 0-based ``epoch``), which the authors'
    transfer code runs with ``log_iters`` 5: after epochs 1, 6, ..., 146 and 150 of 150. rdet
    reports the final value and records the best periodic one beside it (which epochs are
    evaluated changes only ``best_value`` / ``best_epoch``)."""

    def __init__(self, evaluate: Callable[[], Dict[str, float]], every: int):
        self.evaluate, self.every = evaluate, every

    def before_train(self) -> None:
        self.trainer.history.setdefault("evals", [])

    def after_epoch(self) -> None:
        t, epoch = self.trainer, self.trainer.epoch  # 0-based, as in the library
        if epoch == t.epochs - 1 or (self.every and epoch % self.every == 0):
            t.history["evals"].append([epoch + 1, self.evaluate()])


def final_and_best(history: Dict[str, Any], metric: str) -> Dict[str, Any]:
    """From ``history['evals']``: the last evaluation's scores and the best periodic ``metric``."""
    evals = history.get("evals") or []
    if not evals:
        return {}
    best_epoch, best = max(evals, key=lambda e: (e[1][metric], -e[0]))
    return {"final": evals[-1][1], "best_value": best[metric], "best_epoch": best_epoch, "final_epoch": evals[-1][0]}


class OverfitGuard(HookBase):
    """Catastrophic-overfitting guard for fast adversarial training (after Wong et al. 2020,
    "Fast is better than free", Sec. 5.3): after each epoch, ``measure()`` gives PGD accuracy (%)
    on a fixed guard batch; when it falls more than ``margin`` points below its best so far,
    training stops and the best epoch's weights are put back. ``history['guard']`` records each
    measurement and the decision; it travels in the checkpoint, so a run whose guard fired and
    that is resumed (e.g. killed during its final evaluation; study cells always resume) trains no
    further and reports the same stop.

    How it differs from Wong et al.'s rule (their ``train_fgsm.py --early-stop``): they attack the
    epoch's *first training minibatch* (a different batch every epoch) with PGD-5, compare with
    the *previous* epoch's accuracy, stop on a drop of more than 0.2 (20 points) and keep the
    previous epoch's weights. rdet measures one fixed, class-stratified, seeded batch of
    ``ADV.GUARD_SAMPLES`` training images with PGD-``ADV.GUARD_STEPS`` from a fixed random start,
    so successive measurements differ only by the weights; it compares with the *best* epoch so
    far (a slow slide of several small drops also fires) by ``ADV.GUARD_MARGIN`` points, and keeps
    the best epoch's weights (which, after a single collapse, are Wong et al.'s previous epoch).
    ``measure`` must leave every random generator as it found it (rdet.tasks.pretrain's does).
    """

    def __init__(self, measure: Callable[[], float], margin: float):
        self.measure, self.margin = measure, margin
        self._best_state: Optional[Dict[str, torch.Tensor]] = None

    def before_train(self) -> None:
        t = self.trainer
        g = t.history.setdefault("guard", {"pgd_acc": [], "fired": False})
        if g.get("best_state") is not None:
            self._best_state = g["best_state"]
        if g.get("fired"):  # decided before a resume: the stop stands
            t.stop_reason = g.get("reason") or f"the overfitting guard stopped the run after epoch {g['stopped_after']}"

    def after_epoch(self) -> None:
        t = self.trainer
        g = t.history["guard"]
        acc = float(self.measure())
        g["pgd_acc"].append([t.epoch + 1, acc])
        best_epoch, best = max(g["pgd_acc"], key=lambda e: (e[1], -e[0]))
        if best_epoch == t.epoch + 1:
            self._best_state = {k: v.detach().cpu().clone() for k, v in t.model.state_dict().items()}
            g["best_state"] = self._best_state  # saved with the checkpoint, for a resumed run
        elif best - acc > self.margin:
            t.model.load_state_dict(self._best_state)
            t.stop_reason = (f"catastrophic overfitting: PGD accuracy on the guard batch fell from {best:.1f}% "
                             f"(epoch {best_epoch}) to {acc:.1f}%; keeping epoch {best_epoch}'s weights")
            g.update(fired=True, best_epoch=best_epoch, best_pgd_acc=best, last_pgd_acc=acc, stopped_after=t.epoch + 1,
                     reason=t.stop_reason)

    def weights_epoch(self) -> int:
        """The epoch (1-based) whose weights the model holds: the best one after the guard fired."""
        g = self.trainer.history.get("guard", {})
        return int(g["best_epoch"]) if g.get("fired") else self.trainer.epoch + 1

    def summary(self) -> Dict[str, Any]:
        g = self.trainer.history.get("guard", {})
        return {k: v for k, v in g.items() if k != "best_state"}


class Checkpointer(HookBase):
    """Save the resumable state after every epoch: ``save()`` runs on every process (it gathers
    per-process state) and writes from the main one, atomically."""

    def __init__(self, path: Path, save: Callable[[], None]):
        self.path, self.save = path, save

    def after_epoch(self) -> None:
        self.save()


class TensorBoard(HookBase):
    """Epoch scalars (train loss/accuracy, lr, evaluations, guard) to ``OUTPUT_DIR/tb``."""

    def __init__(self, log_dir: Path, tag: str):
        self.log_dir, self.tag, self.writer = log_dir, tag, None

    def before_train(self) -> None:
        if self.trainer.rt.is_main:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(self.log_dir))

    def after_epoch(self) -> None:
        if self.writer is None:
            return
        t, step = self.trainer, self.trainer.epoch + 1
        self.writer.add_scalar(f"{self.tag}/loss", t.stats["loss"], step)
        self.writer.add_scalar(f"{self.tag}/acc", t.stats["acc"], step)
        self.writer.add_scalar(f"{self.tag}/lr", t.optimizer.param_groups[0]["lr"], step)
        evals = t.history.get("evals") or []
        if evals and evals[-1][0] == step:
            for k, v in evals[-1][1].items():
                self.writer.add_scalar(f"test/{k}", v, step)
        guard = (t.history.get("guard") or {}).get("pgd_acc") or []
        if guard and guard[-1][0] == step:
            self.writer.add_scalar("guard/pgd_acc", guard[-1][1], step)

    def after_train(self) -> None:
        if self.writer is not None:
            self.writer.close()


class EpochLog(HookBase):
    """One log line per epoch: loss, accuracy, lr, time, and any evaluation just made."""

    def after_epoch(self) -> None:
        t = self.trainer
        if not t.rt.is_main:
            return
        extra = ""
        evals = t.history.get("evals") or []
        if evals and evals[-1][0] == t.epoch + 1:
            extra = f", test top1 {evals[-1][1]['top1']:.2f}%"
        guard = (t.history.get("guard") or {}).get("pgd_acc") or []
        if guard and guard[-1][0] == t.epoch + 1:
            extra += f", guard PGD acc {guard[-1][1]:.1f}%"
        logger.info("epoch %d/%d: loss %.3f, train acc %.1f%%, lr %.3g, %.1f s%s", t.epoch + 1, t.epochs,
                    t.stats["loss"], t.stats["acc"], t.optimizer.param_groups[0]["lr"], t.stats["time_s"], extra)

