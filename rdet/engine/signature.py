"""A run's signature: the config values that define what a training run computes.

Stored in every resumable checkpoint and compared on ``--resume``, so that a checkpoint of one run
(eps 0, lr 0.1, 5 epochs) is never continued under another's settings and labelled with them.
Where the data lives, how many loader workers read it, the device and the precision do not change
what is being trained and are left out; so are test-only settings.
"""
from __future__ import annotations

from typing import Any, Dict, Optional

SECTIONS = ("MODEL", "DATA", "SOLVER", "ADV", "TRANSFER")
IGNORED = {"MODEL.ALLOW_PICKLE", "DATA.ROOT", "DATA.NUM_WORKERS", "DATA.MAX_TEST", "DATA.TEST_RESIZE",
           "DATA.SKIP_BAD_FILES", "TRANSFER.LR_GRID", "TRANSFER.SEEDS", "ADV.EVAL_STEPS"}


def run_signature(cfg) -> Dict[str, Any]:
    """Flat ``{"SECTION.KEY": value}`` of the defining keys of ``cfg`` (plus ``SEED``)."""
    sig: Dict[str, Any] = {"SEED": cfg.SEED}
    for section in SECTIONS:
        node = cfg.get(section)
        if node is None:
            continue
        for key, value in _flatten(node, section):
            if key not in IGNORED:
                sig[key] = list(value) if isinstance(value, tuple) else value
    return sig


def _flatten(node, prefix):
    for k, v in node.items():
        if hasattr(v, "items"):
            yield from _flatten(v, f"{prefix}.{k}")
        else:
            yield f"{prefix}.{k}", v


def describe_mismatch(stored: Optional[Dict[str, Any]], current: Dict[str, Any]) -> Optional[str]:
    """``None`` when equal, else a short text naming each differing key with both values."""
    if stored is None:
        return "it has no run signature (made by an older rdet)"
    keys = sorted(set(stored) | set(current))
    diffs = [f"{k} {stored.get(k, '<unset>')!r} in the checkpoint vs {current.get(k, '<unset>')!r} now"
             for k in keys if stored.get(k) != current.get(k)]
    return "; ".join(diffs) if diffs else None
