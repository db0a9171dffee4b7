"""Where and how a training job runs: device, mixed precision, memory format, DDP process group.

Mixed precision: bf16 autocast on CPU (no loss scaling needed), fp16 (with GradScaler) or bf16 on
CUDA. DDP: started by ``torchrun`` (reads ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``), gloo on CPU,
NCCL on GPU.
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Optional

import torch
import torch.distributed as dist

from rdet.errors import ConfigError

_AMP = {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass
class Runtime:
    device: torch.device
    amp_dtype: Optional[torch.dtype] = None
    channels_last: bool = False
    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def grad_scaler(self) -> Optional["torch.amp.GradScaler"]:
        """fp16 needs loss scaling; bf16 has fp32's exponent range and does not."""
        if self.amp_dtype == torch.float16:
            return torch.amp.GradScaler(self.device.type)
        return None

    def inputs(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device, non_blocking=True)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last and x.dim() == 4 else x

    def prepare(self, model: torch.nn.Module) -> torch.nn.Module:
        """Move ``model`` to the device (channels_last if asked); the DDP wrapper is separate
        (:meth:`wrap_ddp`) because fixed-feature transfer trains only a head."""
        model.to(self.device)
        if self.channels_last:
            model.to(memory_format=torch.channels_last)
        return model

    def wrap_ddp(self, model: torch.nn.Module) -> torch.nn.Module:
        if not self.distributed:
            return model
        ids = [self.device.index] if self.device.type == "cuda" else None
        return torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)

    def all_reduce(self, t: torch.Tensor) -> torch.Tensor:
        if self.distributed:
            dist.all_reduce(t)
        return t


def setup_runtime(cfg) -> Runtime:
    """Runtime from ``cfg.RUNTIME`` and the torchrun environment (initialises the process group)."""
    want = cfg.RUNTIME.DEVICE
    if want == "auto":
        want = "cuda" if torch.cuda.is_available() else "cpu"
    if want.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("RUNTIME.DEVICE is cuda but no CUDA device is available (use cpu or auto)")
    if cfg.RUNTIME.AMP not in _AMP:
        raise ConfigError(f"RUNTIME.AMP must be one of {', '.join(_AMP)}, not {cfg.RUNTIME.AMP!r}")
    amp = _AMP[cfg.RUNTIME.AMP]
    if amp == torch.float16 and not want.startswith("cuda"):
        raise ConfigError("RUNTIME.AMP fp16 needs CUDA; use bf16 on CPU")
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    device = torch.device(want)
    if world > 1:
        if device.type == "cuda":
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
            torch.cuda.set_device(device)
        if not dist.is_initialized():
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Runtime(device, amp, bool(cfg.RUNTIME.CHANNELS_LAST), rank, world)
