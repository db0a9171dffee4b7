"""Where and how a training job runs: device, mixed precision, memory format, process group.

Mixed precision: bf16 autocast (no loss scaling needed) or fp16 with a ``GradScaler``, on CUDA and
on CPU. Distributed: a process started by ``torchrun`` (``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` set)
always takes the distributed path -- process group, DDP wrapper, collectives -- even at world size
1, so one GPU exercises NCCL end to end; gloo on CPU. Every collective's tensor lives on the
runtime's device (NCCL accepts CUDA tensors only): :meth:`Runtime.all_reduce` refuses any other.
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Optional

import torch
import torch.distributed as dist

from rdet.config.schema import check_value
from rdet.core.collector import settle
from rdet.core.errors import ConfigError

_AMP = {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass
class Runtime:
    device: torch.device
    amp_dtype: Optional[torch.dtype] = None
    channels_last: bool = False
    rank: int = 0
    world_size: int = 1
    distributed: bool = False  # a process group is in use (torchrun), whatever the world size

    def __post_init__(self):
        if self.device.type == "cuda" and self.device.index is None:  # "cuda" means the current GPU
            self.device = torch.device("cuda", torch.cuda.current_device())

    @property
    def is_main(self) -> bool:
        return self.rank == 0

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
        """Sum ``t`` over processes in place. ``t`` must be on :attr:`device`: a CPU tensor in an
        NCCL all-reduce fails only on GPU machines, so it is refused everywhere."""
        if t.device != self.device:
            raise RuntimeError(f"collective on a {t.device} tensor; the runtime's device is {self.device}")
        if self.distributed:
            dist.all_reduce(t)
        return t

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()


def launched_by_torchrun() -> bool:
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ and "LOCAL_RANK" in os.environ


def restarted_by_torchrun() -> bool:
    """This process group is a torchrun restart (``--max-restarts``: a process died and torchrun
    started the whole group again): the run must continue from its own last checkpoint, whether
    or not its command line says ``--resume``."""
    return int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") or 0) > 0


def init_process_group(backend: str, rank: int, world: int) -> None:
    """The process group, with the keys of this torchrun attempt apart from the previous ones.

    torchrun (c10d rendezvous, ``TORCHELASTIC_USE_AGENT_STORE=True``) keeps one store for all its
    restarts, and ``env://`` puts each group's keys (every rank's gloo/NCCL address) under the
    same names every time: a restarted rank could read the address of a process that died with
    the previous attempt and fail with "connection refused" (seen with ``--max-restarts`` on a
    loaded machine, about half the restarts). The keys of attempt ``TORCHELASTIC_RESTART_COUNT``
    go under their own prefix; every other launch keeps ``env://``.

    ``torch.distributed.nn`` is imported first: its functions take ``group=group.WORLD`` as a
    default argument, evaluated when the module is imported, and DDP imports it on first use.
    Imported after the group exists, it would hold the group for the rest of the process, and
    ``destroy_process_group`` at the end of the command (:func:`rdet.cli.run_cli`) could not free
    it and join gloo's threads. (timm and detectron2 import it too, but a task need not import
    either before its group exists.)"""
    import torch.distributed.nn  # noqa: F401  (see above: before any group exists)

    if os.environ.get("TORCHELASTIC_USE_AGENT_STORE") != "True":
        dist.init_process_group(backend)
        return
    attempt = int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") or 0)
    store = dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), world, is_master=False)
    dist.init_process_group(backend, store=dist.PrefixStore(f"rdet/attempt_{attempt}/", store), rank=rank,
                            world_size=world)


def setup_runtime(cfg) -> Runtime:
    """Runtime from ``cfg.RUNTIME`` and the torchrun environment (initialises the process group)."""
    settle()  # a task's work starts here, its imports done (rdet.core.collector)
    want = cfg.RUNTIME.DEVICE
    if want == "auto":
        want = "cuda" if torch.cuda.is_available() else "cpu"
    if want.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("RUNTIME.DEVICE is cuda but no CUDA device is available (use cpu or auto)")
    check_value("RUNTIME.AMP", cfg.RUNTIME.AMP)
    device = torch.device(want)
    distributed = launched_by_torchrun()
    rank, world = (int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])) if distributed else (0, 1)
    if device.type == "cuda":
        if distributed:
            device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
        elif device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
        torch.cuda.set_device(device)
        torch.backends.cudnn.benchmark = True  # fixed input sizes: let cuDNN pick its fastest kernels
    if distributed and not dist.is_initialized():
        init_process_group("nccl" if device.type == "cuda" else "gloo", rank, world)
    return Runtime(device, _AMP[cfg.RUNTIME.AMP], bool(cfg.RUNTIME.CHANNELS_LAST), rank, world, distributed)
