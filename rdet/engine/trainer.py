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

Counting and schedule: the lr scheduler (an epoch-based one, ``rdet.engine.build``) is stepped
once per *epoch-equivalent* of optimizer steps (``epoch_steps``, the batches of one pass),
inside :meth:`EpochTrainer.optimize`; training ends after ``total_steps`` optimizer steps. For
one step per batch that is the usual once-per-epoch schedule. Free training takes ``replays``
steps per batch, so its lr drops land on the configured epochs (after 30 and 60 of 90, not after
the pass that crosses them) and its last pass is partial when ``epochs`` is not a multiple of
``replays``.

Randomness: when ``seed`` is given, the global generators are seeded before every step from
``(seed, epoch, iteration, rank)`` (``rdet.engine.streams.step_seed``): random starts differ
between ranks and a resumed run, mid-epoch included, continues them exactly. The data's
augmentation is seeded per sample by the loader (``rdet.engine.build_loader``).

Mid-epoch checkpoints: ``checkpoint`` (a callable, given by ``RunDir``) is called inside an epoch
every ``checkpoint_every_iters`` iterations and/or every ``checkpoint_minutes`` of wall time
(decided by the main process, at ``log_every`` boundaries, and shared with the others); the state
holds the epoch's position (batches done, partial statistics), so :meth:`load_position` resumes
with the same batches.

A non-finite training loss stops the run with :class:`NonFiniteLossError` naming the epoch and
iteration; the check runs before every checkpoint, so the last checkpoint on disk holds finite
weights. (Steps that fp16's GradScaler skips for inf/NaN *gradients* are ordinary and not this.)
"""
from __future__ import annotations

import logging
import time
from typing import Any, Callable, Dict, List, Optional, Sequence

import torch
from tqdm import tqdm

from rdet.core.errors import NonFiniteLossError
from rdet.core import preemption
from rdet.engine.streams import step_seed

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
    """Runs passes over ``loader`` from ``start_epoch`` (set by a resume) until ``epochs`` passes
    or ``total_steps`` optimizer steps (default ``epochs * len(loader)``) are done.

    ``model`` is what the optimizer trains (``ddp`` its DDP wrapper, or the model itself).
    ``history`` holds what hooks record per epoch (evaluations, guard measurements); it is saved
    with the checkpoint so a resumed run reports the same as an uninterrupted one. ``iter``
    counts optimizer steps over the whole run.
    """

    def __init__(self, model: torch.nn.Module, loader, optimizer: torch.optim.Optimizer, scheduler, rt, step,
                 epochs: int, *, ddp: Optional[torch.nn.Module] = None, scaler=None,
                 train_mode: Optional[Callable[[torch.nn.Module], None]] = None, total_steps: Optional[int] = None,
                 seed: Optional[int] = None, checkpoint: Optional[Callable[[], None]] = None,
                 checkpoint_every_iters: int = 0, checkpoint_minutes: float = 0.0, log_every: int = 20,
                 desc: str = "train"):
        self.model, self.ddp = model, ddp if ddp is not None else model
        self.loader, self.optimizer, self.scheduler, self.rt, self.step = loader, optimizer, scheduler, rt, step
        self.epochs, self.scaler, self.seed = epochs, scaler, seed
        self.epoch_steps = max(1, len(loader))  # optimizer steps per epoch-equivalent: the schedule's unit
        self.total_steps = epochs * self.epoch_steps if total_steps is None else int(total_steps)
        self.train_mode = train_mode or (lambda m: m.train())
        self.log_every, self.desc = max(1, log_every), desc
        self.checkpoint, self.ckpt_iters, self.ckpt_seconds = checkpoint, int(checkpoint_every_iters), \
            60.0 * float(checkpoint_minutes)
        self.start_epoch = 0
        self.epoch = -1
        self.iter = 0
        self.batch_in_epoch = 0  # batches of the current epoch done (its position, for a mid-epoch checkpoint)
        self.stats: Dict[str, float] = {}
        self.history: Dict[str, Any] = {}
        self.stop_reason: Optional[str] = None
        self._hooks: List[HookBase] = []
        self._resume_position: Optional[Dict[str, Any]] = None
        self._totals: Optional[torch.Tensor] = None
        self._count = 0
        self._epoch_time = 0.0
        self._finite: List[torch.Tensor] = []
        self._last_save = time.time()

    def register_hooks(self, hooks: Sequence[Optional[HookBase]]) -> None:
        for h in hooks:
            if h is not None:
                h.trainer = self
                self._hooks.append(h)

    def steps_left(self) -> int:
        return max(0, self.total_steps - self.iter)

    def train(self) -> Dict[str, float]:
        """Train to the end (or a stop), then let go of the loader and the hooks. The hooks point
        back at the trainer, and what a hook holds (an evaluation's test loader) would otherwise
        be freed only by the garbage collector, whose weakref callbacks close a loader's index
        queues before its iterator shuts the persistent workers down: the workers never hear
        the shutdown and each costs torch's 5 s join timeout. Let go here, the caller's last
        references free them at once. A trainer trains once."""
        try:
            for h in self._hooks:
                h.before_train()
            if self.stop_reason:  # decided before a resume (the overfitting guard): train no further
                logger.warning("not training further: %s", self.stop_reason)
            for epoch in range(self.start_epoch, self.epochs):
                if self.stop_reason or not self.steps_left():
                    break
                self.epoch = epoch
                set_loader_epoch(self.loader, epoch)
                self.train_mode(self.ddp)
                started = time.perf_counter()
                self.stats = self.run_epoch()
                self.stats["time_s"] = self._epoch_time + time.perf_counter() - started
                # the training loop's own time, summed over epochs and resumed segments (no hooks, no evals)
                self.history["train_time_s"] = self.history.get("train_time_s", 0.0) + self.stats["time_s"]
                for h in self._hooks:
                    h.after_epoch()
                if self.stop_reason:
                    logger.warning("stopping after epoch %d: %s", epoch + 1, self.stop_reason)
                    break
            for h in self._hooks:
                h.after_train()
            return self.stats
        finally:
            self.loader, self._hooks = None, []

    def run_epoch(self) -> Dict[str, float]:
        """One pass (or the rest of one, after a mid-epoch resume); mean loss and accuracy (%) over
        all processes."""
        rt = self.rt
        self._start_position()
        first = self.batch_in_epoch
        self._epoch_time_started = time.perf_counter()
        bar = tqdm(self.loader, desc=f"{self.desc} ep{self.epoch + 1}/{self.epochs}", leave=False,
                   disable=None if rt.is_main else True, dynamic_ncols=True)
        for i, (x, y) in enumerate(bar, start=first):
            if not self.steps_left():  # free training's partial last pass
                break
            if self.seed is not None:
                step_seed(self.seed, self.epoch, i, rt.rank)
            x, y = rt.inputs(x), y.to(rt.device, non_blocking=True)
            logits, loss = self.step(self, x, y)
            n = y.numel()
            self._count += n  # on the host: adding it to the device tensor every step would copy it there
            self._totals[0] += loss.double() * n
            self._totals[1] += (logits.argmax(1) == y).sum()
            self._finite.append(torch.isfinite(loss))
            self.batch_in_epoch = i + 1
            if (i + 1) % self.log_every == 0 or self._ckpt_iter_due():
                self._check_and_maybe_save(bar, loss)
        self._check_finite(self._finite_flags())
        totals = self._totals.clone()
        totals[2] = self._count
        rt.all_reduce(totals)
        count = totals[2].clamp_min(1)
        self._totals, self.batch_in_epoch = None, 0
        return {"loss": float(totals[0] / count), "acc": float(100 * totals[1] / count)}

    def optimize(self, loss: torch.Tensor) -> None:
        """Backward and optimizer step, with loss scaling when a GradScaler is in use; the lr
        scheduler steps after every ``epoch_steps`` optimizer steps."""
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            loss.backward()
            self.optimizer.step()
        self.iter += 1
        if self.iter % self.epoch_steps == 0:
            self.scheduler.step()

    # --- position inside an epoch (mid-epoch checkpoints) -------------------------------------

    def position(self) -> Optional[Dict[str, Any]]:
        """Where the current epoch stands, or ``None`` between epochs: batches done and the
        partial statistics, all-reduced (call on every process; rank 0 saves them)."""
        if self._totals is None:
            return None
        totals = self._totals.clone()
        totals[2] = self._count
        self.rt.all_reduce(totals)
        return {"epoch": self.epoch, "batches": self.batch_in_epoch, "totals": totals.cpu(),
                "time_s": self._epoch_time + time.perf_counter() - self._epoch_time_started}

    def load_position(self, pos: Dict[str, Any]) -> None:
        """Continue epoch ``pos['epoch']`` after its first ``pos['batches']`` batches."""
        self.start_epoch = int(pos["epoch"])
        self._resume_position = pos

    def _start_position(self) -> None:
        self._totals = torch.zeros(3, dtype=torch.float64, device=self.rt.device)  # loss sum, correct, count
        self._count, self.batch_in_epoch, self._epoch_time, self._finite = 0, 0, 0.0, []
        pos, self._resume_position = self._resume_position, None
        if pos is None or int(pos["epoch"]) != self.epoch:
            return
        self.batch_in_epoch = int(pos["batches"])
        self._epoch_time = float(pos.get("time_s", 0.0))
        if self.rt.is_main:  # the saved totals are the sum over processes: count them once
            t = pos["totals"].to(self.rt.device, torch.float64)
            self._totals[:2] = t[:2]
            self._count = int(t[2])
        sampler = getattr(self.loader, "sampler", None)
        if not hasattr(sampler, "start_at"):
            raise RuntimeError("a mid-epoch resume needs a loader from rdet.engine.build_loader")
        sampler.start_at(self.batch_in_epoch * self.loader.batch_size)

    def _ckpt_iter_due(self) -> bool:
        return self.checkpoint is not None and self.ckpt_iters > 0 and self.batch_in_epoch % self.ckpt_iters == 0

    def _check_and_maybe_save(self, bar, loss) -> None:
        """At a log boundary: the finiteness check, the progress bar and the mid-epoch checkpoint
        decision (the main process's clock decides for everyone)."""
        rt = self.rt
        flags = self._finite_flags()
        due = self._ckpt_iter_due() or (self.checkpoint is not None and self.ckpt_seconds > 0 and rt.is_main
                                        and time.time() - self._last_save >= self.ckpt_seconds) \
            or (self.checkpoint is not None and preemption.pending())  # checkpoint, then stop (rdet.core.preemption)
        shared = torch.tensor([float((~flags).any()) if flags is not None else 0.0, float(due)],
                              dtype=torch.float64, device=rt.device)
        rt.all_reduce(shared)
        self._check_finite(flags, elsewhere=bool(shared[0] > 0))
        if rt.is_main:
            bar.set_postfix(loss=f"{loss.item():.3f}")
        if shared[1] > 0 and self.batch_in_epoch < self.epoch_steps:  # at the epoch's end, its own checkpoint follows
            self.checkpoint()
            self._last_save = time.time()

    def _finite_flags(self) -> Optional[torch.Tensor]:
        if not self._finite:
            return None
        flags, self._finite = torch.stack(self._finite).cpu(), []
        self._flag_base = self.batch_in_epoch - len(flags)
        return flags

    def _check_finite(self, flags: Optional[torch.Tensor], elsewhere: bool = False) -> None:
        bad = [] if flags is None else (~flags).nonzero().flatten().tolist()
        if bad:
            it = self._flag_base + bad[0] + 1
            raise NonFiniteLossError(f"non-finite training loss in epoch {self.epoch + 1}, iteration {it}: "
                                     f"stopping; the last checkpoint, from before it, is kept")
        if elsewhere:
            raise NonFiniteLossError(f"non-finite training loss in another process, epoch {self.epoch + 1} before "
                                     f"iteration {self.batch_in_epoch}: stopping; the last checkpoint is kept")
