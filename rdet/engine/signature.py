"""A run's signature: the config values that define what a training run computes.

Stored in every resumable checkpoint and compared on ``--resume``, so that a checkpoint of one run
(eps 0, lr 0.1, 5 epochs) is never continued under another's settings and labelled with them.
Which keys count is decided once per key in :mod:`rdet.config.schema` (where the data lives, how
many loader workers read it, the device, the precision and test-only settings do not).
"""
from __future__ import annotations

from typing import Any, Dict, Optional

from rdet.config.schema import run_signature  # which keys count: each key's ``sig`` in the schema

__all__ = ["run_signature", "describe_mismatch"]


def describe_mismatch(stored: Optional[Dict[str, Any]], current: Dict[str, Any]) -> Optional[str]:
    """``None`` when equal, else a short text naming each differing key with both values."""
    if stored is None:
        return "it has no run signature (made by an older rdet)"
    keys = sorted(set(stored) | set(current))
    diffs = [f"{k} {stored.get(k, '<unset>')!r} in the checkpoint vs {current.get(k, '<unset>')!r} now"
             for k in keys if stored.get(k) != current.get(k)]
    return "; ".join(diffs) if diffs else None
