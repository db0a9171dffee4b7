"""Per-epoch training state, for ``--resume``: an rdet checkpoint that the backbone registry
reads as weights (``{'model': torchvision state_dict, 'rdet': meta}``) and that also carries the
optimizer, the lr scheduler, the finished epoch and the RNG state. Everything in it loads with
``torch.load(weights_only=True)``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Optional

import torch

from rdet.atomic import torch_save
from rdet.errors import CheckpointError

LAST = "last_checkpoint.pth"
FINAL = "model_final.pth"


def rdet_checkpoint(model, meta: Dict[str, Any], **extra) -> Dict[str, Any]:
    """The dict rdet saves for a ``Classifier`` (unwrapped from DDP)."""
    inner = getattr(model, "module", model)
    sd = {k: v.detach().cpu() for k, v in inner.torchvision_state_dict().items()}
    return {"model": sd, "rdet": dict(meta, num_classes=inner.num_classes), **extra}


def save_state(path: Path, model, optimizer, scheduler, epoch: int, meta: Dict[str, Any]) -> None:
    """Atomically save the state after finishing ``epoch`` (0-based)."""
    torch_save(rdet_checkpoint(model, dict(meta, epoch=epoch), optimizer=optimizer.state_dict(),
                               scheduler=scheduler.state_dict(), epoch=epoch,
                               rng=torch.get_rng_state()), path)


def load_state(path: Path, model, optimizer=None, scheduler=None) -> int:
    """Restore from ``path``; returns the first epoch still to run."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise CheckpointError(f"{path}: cannot resume from it ({type(e).__name__})") from None
    inner = getattr(model, "module", model)
    inner.load_torchvision_state_dict(ckpt["model"])
    if optimizer is not None:
        optimizer.load_state_dict(ckpt["optimizer"])
    if scheduler is not None:
        scheduler.load_state_dict(ckpt["scheduler"])
    torch.set_rng_state(ckpt["rng"])
    return int(ckpt["epoch"]) + 1


def resume_point(output_dir: Path, resume: bool) -> Optional[Path]:
    path = Path(output_dir) / LAST
    return path if resume and path.is_file() else None
