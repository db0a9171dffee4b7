"""The one epoch loop of rdet: pretraining, full-network and fixed-feature transfer, and the
linear head on cached features all run through :class:`EpochTrainer`.

What differs between them is plugged in, as in detectron2's ``TrainerBase``:

* a *step* (``rdet.engine.steps``): how one batch becomes an optimizer update -- plain, after an
  attack (PGD, FGSM-RS) or "free" replays;
* a *train-mode* function: what is in train mode during an epoch (fixed-feature transfer keeps the
  frozen body, BatchNorm included, in eval mode; ``MODEL.BN fixed_stats`` keeps every BN in eval mode);
* *hooks* (``rdet.engine.hooks``): periodic evaluation, the catastrophic-overfitting guard,
  checkpointing, TensorBoard, progress lines.

Batches are RGB images in [0, 1] (normalisation is inside the model) or cached features.
Statistics are summed on the runtime's device and all-reduced once per epoch.
"""
from __future__ import annotations

import logging
import time
from typing import Any, Callable, Dict, List, Optional, Sequence

import torch
from tqdm import tqdm

logger = logging.getLogger(__name__)


class HookBase:
    """Called around the epoch loop; ``self.trainer`` is set by :meth:`EpochTrainer.register_hooks`."""

    trainer: "EpochTrainer"

    def before_train(self) -> None:
        pass

    def after_epoch(self) -> None:
        pass

    def after_train(self) -> None:
        pass


def set_loader_epoch(loader, epoch: int) -> None:
    """Reshuffle for ``epoch``: ``DistributedSampler.set_epoch`` or a loader's own ``set_epoch``."""
    for obj in (loader, getattr(loader, "sampler", None)):
        if hasattr(obj, "set_epoch"):
            obj.set_epoch(epoch)
            return


class EpochTrainer:
    """Runs ``epochs`` passes over ``loader`` from ``start_epoch`` (set by a resume).

    ``model`` is what the optimizer trains (``ddp`` its DDP wrapper, or the model itself);
    ``scheduler_steps`` lr-scheduler steps are taken after each pass (free adversarial training
    replays every batch, so one pass stands for several epochs of the schedule).
    ``history`` holds what hooks record per epoch (evaluations, guard measurements); it is saved
    with the checkpoint so a resumed run reports the same as an uninterrupted one.
    """

    def __init__(self, model: torch.nn.Module, loader, optimizer: torch.optim.Optimizer, scheduler, rt, step,
                 epochs: int, *, ddp: Optional[torch.nn.Module] = None, scaler=None,
                 train_mode: Optional[Callable[[torch.nn.Module], None]] = None, scheduler_steps: int = 1,
                 log_every: int = 20, desc: str = "train"):
        self.model, self.ddp = model, ddp if ddp is not None else model
        self.loader, self.optimizer, self.scheduler, self.rt, self.step = loader, optimizer, scheduler, rt, step
        self.epochs, self.scaler, self.scheduler_steps = epochs, scaler, scheduler_steps
        self.train_mode = train_mode or (lambda m: m.train())
        self.log_every, self.desc = max(1, log_every), desc
        self.start_epoch = 0
        self.epoch = -1
        self.iter = 0
        self.stats: Dict[str, float] = {}
        self.history: Dict[str, Any] = {}
        self.stop_reason: Optional[str] = None
        self._hooks: List[HookBase] = []

    def register_hooks(self, hooks: Sequence[Optional[HookBase]]) -> None:
        for h in hooks:
            if h is not None:
                h.trainer = self
                self._hooks.append(h)

    def train(self) -> Dict[str, float]:
        for h in self._hooks:
            h.before_train()
        for epoch in range(self.start_epoch, self.epochs):
            self.epoch = epoch
            set_loader_epoch(self.loader, epoch)
            self.train_mode(self.ddp)
            started = time.perf_counter()
            self.stats = self.run_epoch()
            self.stats["time_s"] = time.perf_counter() - started
            # the training loop's own time, summed over epochs and resumed segments (no hooks, no evals)
            self.history["train_time_s"] = self.history.get("train_time_s", 0.0) + self.stats["time_s"]
            for _ in range(self.scheduler_steps):
                self.scheduler.step()
            for h in self._hooks:
                h.after_epoch()
            if self.stop_reason:
                logger.warning("stopping after epoch %d: %s", epoch + 1, self.stop_reason)
                break
        for h in self._hooks:
            h.after_train()
        return self.stats

    def run_epoch(self) -> Dict[str, float]:
        """One pass; mean loss and accuracy (%) over all processes."""
        rt = self.rt
        totals = torch.zeros(3, dtype=torch.float64, device=rt.device)  # loss sum, correct, count
        count = 0  # on the host: adding it to the device tensor every step would copy it there
        bar = tqdm(self.loader, desc=f"{self.desc} ep{self.epoch + 1}/{self.epochs}", leave=False,
                   disable=None if rt.is_main else True, dynamic_ncols=True)
        for i, (x, y) in enumerate(bar):
            x, y = rt.inputs(x), y.to(rt.device, non_blocking=True)
            logits, loss = self.step(self, x, y)
            n = y.numel()
            count += n
            totals[0] += loss.double() * n
            totals[1] += (logits.argmax(1) == y).sum()
            if rt.is_main and i % self.log_every == 0:
                bar.set_postfix(loss=f"{loss.item():.3f}")  # a sync: only every log_every steps
        totals[2] = count
        rt.all_reduce(totals)
        count = totals[2].clamp_min(1)
        return {"loss": float(totals[0] / count), "acc": float(100 * totals[1] / count)}

    def optimize(self, loss: torch.Tensor) -> None:
        """Backward and optimizer step, with loss scaling when a GradScaler is in use."""
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            loss.backward()
            self.optimizer.step()
        self.iter += 1
