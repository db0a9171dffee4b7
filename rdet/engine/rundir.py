"""The output folder of a training run, and the trainer set-up that pretraining and transfer share.

:class:`RunDir` owns the folder for the run's duration: an exclusive lock (a second run on the same
folder is refused naming the holder's pid), removal of temporary files a killed checkpoint write
left behind, the resume decision (the checkpoint's run signature must match the run's) and the wall
time, which adds up across resumed segments.
"""
from __future__ import annotations

import contextlib
import logging
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

from rdet.core.atomic import remove_stale_temps
from rdet.core import preemption
from rdet.engine.build import build_optimizer, build_scheduler
from rdet.engine.hooks import Checkpointer, EpochLog, TensorBoard
from rdet.engine.signature import run_signature
from rdet.engine.state import LAST, check_resume, gather_rank_states, restore, save_state
from rdet.engine.trainer import EpochTrainer, HookBase

logger = logging.getLogger(__name__)


class RunDir(contextlib.AbstractContextManager):
    """``with RunDir(cfg, rt, resume) as run:`` -- ``run.state`` is the state to resume from (or
    ``None``), ``run.elapsed()`` the run's wall time so far, all segments included."""

    def __init__(self, cfg, rt, resume: bool):
        self.path, self.rt, self.resume = Path(cfg.OUTPUT_DIR), rt, resume
        self.signature = run_signature(cfg)
        self.policy = cfg.RUNTIME.RESUME_MISMATCH
        self.state: Optional[Dict[str, Any]] = None
        self._stack = contextlib.ExitStack()
        self._started = time.time()
        self._before = 0.0

    def __enter__(self) -> "RunDir":
        from rdet.core.runlock import output_lock

        if self.rt.is_main:
            self.path.mkdir(parents=True, exist_ok=True)
            self._stack.enter_context(output_lock(self.path))
            removed = remove_stale_temps(self.path)
            if removed:
                logger.info("removed %d temporary file(s) left by an interrupted write in %s", removed, self.path)
        self.rt.barrier()  # the other ranks read the checkpoint only once the main one holds the folder
        self.state = check_resume(self.path, self.resume, self.signature, self.policy)
        if self.state is not None:
            self._before = float(self.state.get("elapsed_s", 0.0))
        return self

    def __exit__(self, *exc) -> None:
        self._stack.close()

    def elapsed(self) -> float:
        return self._before + time.time() - self._started

    def build_trainer(self, model, params, loader, step, epochs: int, *, ddp=None, train_mode=None,
                      total_steps: Optional[int] = None, weights: Callable[[], Dict[str, Any]], measure_hooks=(),
                      desc: str = "train", cfg=None) -> EpochTrainer:
        """The trainer for this run, resumed when there is a state: SGD and step schedule from
        ``cfg.SOLVER``, a GradScaler for fp16, per-step random streams from ``cfg.SEED``, then
        hooks in order: ``measure_hooks`` (evaluation, guard), the per-epoch checkpoint
        (``weights()`` gives the rdet checkpoint dict), TensorBoard and the epoch log line.
        Mid-epoch checkpoints every ``RUNTIME.CHECKPOINT_MINUTES`` (or, for tests,
        ``RUNTIME.CHECKPOINT_EVERY_ITERS`` iterations). ``total_steps``: the optimizer-step budget
        (default ``epochs * len(loader)``; free training passes ``SOLVER.EPOCHS * len(loader)``)."""
        optimizer = build_optimizer(params, cfg, model=model)  # the model: parameter names, layers
        trainer = EpochTrainer(model, loader, optimizer, build_scheduler(optimizer, cfg), self.rt, step, epochs,
                               ddp=ddp, scaler=self.rt.grad_scaler(), train_mode=train_mode, total_steps=total_steps,
                               seed=int(cfg.SEED), log_every=cfg.RUNTIME.LOG_EVERY, desc=desc,
                               checkpoint_every_iters=int(cfg.RUNTIME.get("CHECKPOINT_EVERY_ITERS", 0)),
                               checkpoint_minutes=float(cfg.RUNTIME.get("CHECKPOINT_MINUTES", 0.0)))

        def save() -> None:  # on every process: the position and the step states are gathered first
            position, ranks = trainer.position(), gather_rank_states(trainer)
            if self.rt.is_main:
                save_state(self.path / LAST, weights(), trainer, self.signature, self.elapsed(), position=position,
                           rank_states=ranks)
                if position is not None:
                    logger.info("mid-epoch checkpoint: epoch %d, %d batches done", position["epoch"] + 1,
                                position["batches"])
            if position is not None:  # a stop asked for from outside (a Slurm time limit) happens now;
                preemption.checkpointed()  # at an epoch's end, after its log line (_StopAfterEpoch)

        trainer.checkpoint = save
        hooks: List[HookBase] = list(measure_hooks)
        hooks.append(Checkpointer(self.path / LAST, save))
        hooks += [TensorBoard(self.path / "tb", desc), EpochLog(), _StopAfterEpoch()]
        trainer.register_hooks(hooks)
        if self.state is not None:
            restore(self.state, model, trainer)
            pos = self.state.get("position")
            if pos is not None:
                logger.info("resuming %s in epoch %d after %d batches", self.path / LAST, pos["epoch"] + 1,
                            pos["batches"])
            else:
                logger.info("resuming %s from epoch %d", self.path / LAST, trainer.start_epoch + 1)
        return trainer


class _StopAfterEpoch(HookBase):
    """Last after-epoch hook: a stop asked for from outside (``rdet.core.preemption``) happens
    here, after the epoch's checkpoint and its log line."""

    def after_epoch(self) -> None:
        preemption.checkpointed()
