"""Settings that are valid but ruinous on the machine at hand: checked with the other config keys.

``RUNTIME.AMP bf16`` is the right advice on a GPU and on a CPU with native bf16 arithmetic (Intel's
AVX512-BF16 or AMX), and a trap elsewhere: on an AVX2-only CPU (AMD EPYC before Zen 4, older
Xeons) PyTorch emulates bf16, and a ResNet-50 forward under bf16 autocast took 22x as long as in
fp32 on such a machine. A run asking for it there is refused in one line before any work, unless
``RUNTIME.ALLOW_SLOW_AMP True`` insists (then one warning line).
"""
from __future__ import annotations

import logging
from functools import lru_cache
from pathlib import Path

from rdet.core.errors import ConfigError

logger = logging.getLogger(__name__)

# /proc/cpuinfo flags of native bf16 arithmetic on x86 (AVX512-BF16; AMX tiles); Arm's is "bf16".
BF16_FLAGS = ("avx512_bf16", "amx_bf16", "bf16")


@lru_cache(maxsize=None)
def cpu_model_and_flags() -> tuple:
    """``(model name, {flags})`` of this machine's CPU, from /proc/cpuinfo (empty where unreadable)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "unknown CPU", frozenset()
    model, flags = "unknown CPU", set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in ("model name", "cpu model") and model == "unknown CPU":
            model = value.strip()
        elif key in ("flags", "features"):
            flags.update(value.split())
    return model, frozenset(flags)


def native_bf16_cpu() -> bool:
    """Whether this CPU computes bf16 natively (else PyTorch emulates it, many times slower)."""
    return bool(set(BF16_FLAGS) & cpu_model_and_flags()[1])


def check_precision(cfg) -> None:
    """One-line :class:`ConfigError` for ``RUNTIME.AMP bf16`` on a CPU run whose CPU emulates bf16
    (a warning instead with ``RUNTIME.ALLOW_SLOW_AMP True``)."""
    r = getattr(cfg, "RUNTIME", None)
    if r is None or r.get("AMP") != "bf16" or r.get("DEVICE") == "cuda":
        return
    if r.get("DEVICE") == "auto":
        import torch

        if torch.cuda.is_available():
            return
    if native_bf16_cpu():
        return
    model = cpu_model_and_flags()[0]
    why = (f"RUNTIME.AMP bf16 on a CPU without native bf16 ({model}: no AVX512-BF16 or AMX), where PyTorch "
           f"emulates it ~20x slower than fp32")
    if r.get("ALLOW_SLOW_AMP"):
        logger.warning("%s: running anyway (RUNTIME.ALLOW_SLOW_AMP True)", why)
        return
    raise ConfigError(f"{why}: use RUNTIME.AMP off, or RUNTIME.ALLOW_SLOW_AMP True to insist")
