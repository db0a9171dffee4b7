"""Building a network whose parameters a checkpoint overwrites next, without initialising them.

torchvision and timm draw every parameter when a network is built (kaiming, truncated-normal).
A load overwrites them at once, yet with the draws, loading a ResNet-18, a ConvNeXt-T or a ViT-B
from a file takes 2-3x as long on a CPU (``python benchmarks/bench_skip_init.py``). Reading a
network's tensor shapes on the meta device pays for them too: there they run as Python reference
kernels. Inside :func:`skip_parameter_init` the draws are skipped: ``torch.nn.init``'s functions
and the in-place tensor writes initialisers make are not run when their target is an
``nn.Parameter``. Buffers (BatchNorm statistics, Swin's relative position index) are computed as
usual, because a checkpoint need not hold them.

A parameter left unwritten would hold whatever memory it was given. So each skipped parameter is
filled with NaN when the block ends (a forgotten one shows as NaN outputs, never as plausible
numbers), and :func:`check_loaded` refuses a model in which a skipped parameter was not written
since: a key the loader missed is an error. It reads each tensor's version counter (bumped by every
in-place write, ``copy_`` included), the one private attribute of torch rdet reads: a scan for NaN
would cost what skipping the draws saves.
"""
from __future__ import annotations

import contextlib
from typing import Dict, Iterator, Tuple

import torch
import torch.nn as nn
from torch.overrides import TorchFunctionMode

# torch.nn.init's functions and the in-place tensor ops initialisers call (timm's trunc_normal_
# is uniform_, erfinv_, mul_, add_, clamp_). Ops that change a tensor's shape or flags
# (requires_grad_, resize_, ...) are not here: they run as usual.
_INIT_OPS = frozenset({
    "uniform_", "normal_", "trunc_normal_", "constant_", "ones_", "zeros_", "eye_", "dirac_",
    "xavier_uniform_", "xavier_normal_", "kaiming_uniform_", "kaiming_normal_", "orthogonal_", "sparse_",
    "erfinv_", "mul_", "add_", "sub_", "div_", "clamp_", "clamp_min_", "clamp_max_", "fill_", "zero_", "copy_",
    "exponential_", "bernoulli_", "random_", "cauchy_", "log_normal_", "geometric_"})


class _SkipParameterInit(TorchFunctionMode):
    def __init__(self):
        super().__init__()
        self.skipped: Dict[int, nn.Parameter] = {}

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if getattr(func, "__name__", "") in _INIT_OPS:
            target = args[0] if args else kwargs.get("tensor")  # torch.nn.init passes its tensor by keyword
            if isinstance(target, nn.Parameter):
                self.skipped[id(target)] = target
                return target
        return func(*args, **kwargs)


class Skipped:
    """The parameters a :func:`skip_parameter_init` block left undrawn, with their version counts
    when it ended."""

    def __init__(self):
        self.versions: Dict[int, Tuple[nn.Parameter, int]] = {}


@contextlib.contextmanager
def skip_parameter_init() -> Iterator[Skipped]:
    """Build networks in this block without drawing their parameters; each parameter an
    initialiser touched holds NaN afterwards. Load every one, then :func:`check_loaded`."""
    mode, skipped = _SkipParameterInit(), Skipped()
    with mode:
        yield skipped
    with torch.no_grad():
        for p in mode.skipped.values():
            if not p.is_meta:
                p.fill_(float("nan"))
    skipped.versions = {k: (p, p._version) for k, p in mode.skipped.items()}


def check_loaded(model: nn.Module, skipped: Skipped, what: str) -> None:
    """Refuse ``model`` if a parameter :func:`skip_parameter_init` left undrawn was not written
    since (``what``: the weights' name, for the message)."""
    from rdet.core.errors import CheckpointError

    for name, p in model.named_parameters():
        before = skipped.versions.get(id(p))
        if before is not None and before[0] is p and p._version == before[1]:
            raise CheckpointError(f"{what}: parameter {name} was not loaded (the loader missed it)")
