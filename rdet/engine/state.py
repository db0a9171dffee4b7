"""Per-epoch training state, for ``--resume``.

A state file is an rdet checkpoint that the backbone registry also reads as weights
(``{'model': torchvision state_dict, 'rdet': meta}``) plus what a resumed run needs to continue
exactly: optimizer, lr scheduler, GradScaler, finished epoch, the optimizer-step count, CPU and
CUDA RNG states, the hooks' history (periodic evaluations, the overfitting guard and its stop
decision), each process's step state (free training's perturbation), the wall time spent so far and
the run's signature (the settings that define it, checked by :func:`check_resume`). A mid-epoch
state (``RUNTIME.CHECKPOINT_MINUTES``) adds ``position``: the epoch in progress, the batches of it
done and its partial statistics; the loaders' and steps' random streams are functions of that
position (``rdet.engine.streams``), so nothing else is needed to continue with the same batches. Everything in it loads
with ``torch.load(weights_only=True)``. The model part is unwrapped (no DDP prefix), so a run
resumes on another number of processes.
"""
from __future__ import annotations

import errno
import logging
from pathlib import Path
from typing import Any, Dict, List, Optional

import torch
import torch.distributed as dist

from rdet.core.atomic import torch_save
from rdet.engine.signature import describe_mismatch
from rdet.core.errors import CheckpointError, ConfigError

logger = logging.getLogger(__name__)

LAST = "last_checkpoint.pth"
FINAL = "model_final.pth"


def rng_state() -> Dict[str, Any]:
    state = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()  # the current device's generator
    return state


def set_rng_state(state: Dict[str, Any]) -> None:
    torch.set_rng_state(state["cpu"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def gather_rank_states(trainer) -> Optional[List[Dict[str, Any]]]:
    """Each process's step state (``step.state_dict()``, e.g. free training's ``delta``), in rank
    order; ``None`` when the step keeps none. A collective: call it on every process."""
    if not hasattr(trainer.step, "state_dict"):
        return None
    local = {"step": trainer.step.state_dict()}
    if not trainer.rt.distributed:
        return [local]
    out: List[Any] = [None] * trainer.rt.world_size
    dist.all_gather_object(out, local)
    return out


def save_state(path: Path, weights: Dict[str, Any], trainer, signature: Dict[str, Any], elapsed_s: float,
               position: Optional[Dict[str, Any]] = None,
               rank_states: Optional[List[Dict[str, Any]]] = None) -> None:
    """Atomically save ``weights`` (an rdet checkpoint dict) and ``trainer``'s state: after its
    current epoch, or inside it when ``position`` (``trainer.position()``) is given. A write that
    fails (a full disk) leaves the previous file as it was and stops the run with one line."""
    finished = trainer.epoch if position is None else int(position["epoch"]) - 1
    state = dict(weights, optimizer=trainer.optimizer.state_dict(), scheduler=trainer.scheduler.state_dict(),
                 epoch=finished, iter=trainer.iter, rng=rng_state(), history=trainer.history, signature=signature,
                 elapsed_s=float(elapsed_s))
    if position is not None:
        state["position"] = position
    if rank_states is not None:
        state["rank_states"] = rank_states
    if trainer.scaler is not None:
        state["scaler"] = trainer.scaler.state_dict()
    try:
        torch_save(state, path)
    except OSError as e:
        reason = "disk full" if e.errno == errno.ENOSPC else (e.strerror or type(e).__name__)
        kept = "the previous checkpoint there is intact" if Path(path).is_file() else "there is no earlier checkpoint"
        raise CheckpointError(f"cannot write {path} ({reason}): stopping; {kept}") from None


def read_state(path: Path) -> Dict[str, Any]:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise CheckpointError(f"{path}: cannot resume from it ({type(e).__name__}: {str(e).splitlines()[0][:120]})") \
            from None


def check_resume(output_dir: Path, resume: bool, signature: Dict[str, Any], policy: str = "error") \
        -> Optional[Dict[str, Any]]:
    """The state to resume from, or ``None`` to start afresh.

    A state whose signature differs from ``signature`` is refused with one line naming the
    differing keys (``policy`` "error"), or discarded (``policy`` "restart"): resuming it would
    label one run's weights with another run's settings.
    """
    path = Path(output_dir) / LAST
    if not resume or not path.is_file():
        return None
    if policy not in ("error", "restart"):
        raise ConfigError(f"RUNTIME.RESUME_MISMATCH must be error or restart, not {policy!r}")
    state = read_state(path)
    diff = describe_mismatch(state.get("signature"), signature)
    if diff is None:
        return state
    if policy == "restart":
        logger.warning("%s was made by a run with other settings (%s): starting afresh", path, diff)
        return None
    raise CheckpointError(f"{path} was made by a run with other settings ({diff}); use another output folder "
                          f"or RUNTIME.RESUME_MISMATCH restart to discard it")


def restore(state: Dict[str, Any], model, trainer) -> None:
    """Load ``state`` into ``model`` (a ``Classifier``, unwrapped) and ``trainer``."""
    try:
        getattr(model, "module", model).load_torchvision_state_dict(state["model"])
        trainer.optimizer.load_state_dict(state["optimizer"])
        trainer.scheduler.load_state_dict(state["scheduler"])
    except (KeyError, RuntimeError, ValueError) as e:
        raise CheckpointError(f"cannot resume: the checkpoint does not fit this model ({str(e).splitlines()[0][:160]})") \
            from None
    if trainer.scaler is not None and "scaler" in state:
        trainer.scaler.load_state_dict(state["scaler"])
    trainer.epoch = int(state["epoch"])  # the last finished epoch: what a run with nothing left to train reports
    trainer.start_epoch = trainer.epoch + 1
    # older states lack the step count: the schedule's epochs times the steps per epoch
    trainer.iter = int(state.get("iter", int(state["scheduler"].get("last_epoch", 0)) * trainer.epoch_steps))
    if state.get("position") is not None:
        trainer.load_position(state["position"])
    trainer.history = state.get("history", {})
    ranks = state.get("rank_states")
    if ranks is not None and hasattr(trainer.step, "load_state_dict"):
        if len(ranks) == trainer.rt.world_size:
            trainer.step.load_state_dict(ranks[trainer.rt.rank]["step"])
        else:
            logger.warning("the checkpoint's step state is from %d processes, this run has %d: free training's "
                           "perturbation starts again at 0", len(ranks), trainer.rt.world_size)
    set_rng_state(state["rng"])
