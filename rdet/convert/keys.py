"""torchvision ResNet parameter names -> Detectron2 ResNet parameter names.

Detectron2 names a ResNet ``stem.conv1`` + ``res2..res5``; each conv carries its BatchNorm as
``<conv>.norm``, and the projection shortcut is ``shortcut`` (torchvision: ``downsample.0/1``).
Names are given without the ``backbone.bottom_up.`` / ``roi_heads.`` prefixes: detectron2's
checkpointer matches them by suffix (``matching_heuristics``), so one file serves FPN
(``backbone.bottom_up.res5``) and C4 (``roi_heads.res5``) models alike.
"""
from __future__ import annotations

import re
from typing import Dict, Optional

import torch

_CONV = re.compile(r"^layer(\d)\.(\d+)\.conv(\d)\.weight$")
_BN = re.compile(r"^layer(\d)\.(\d+)\.bn(\d)\.(weight|bias|running_mean|running_var)$")
_DS_CONV = re.compile(r"^layer(\d)\.(\d+)\.downsample\.0\.weight$")
_DS_BN = re.compile(r"^layer(\d)\.(\d+)\.downsample\.1\.(weight|bias|running_mean|running_var)$")
# Not part of the backbone: the classifier, and BN's step counter (FrozenBN has none).
_DROP = re.compile(r"^fc\.|num_batches_tracked$")


def d2_name(tv_name: str) -> Optional[str]:
    """The Detectron2 name of a torchvision ResNet tensor; ``None`` for tensors that are dropped.

    Raises ``KeyError`` for a name that belongs to no ResNet (the caller checked the arch)."""
    if _DROP.search(tv_name):
        return None
    if tv_name == "conv1.weight":
        return "stem.conv1.weight"
    m = re.match(r"^bn1\.(\w+)$", tv_name)
    if m:
        return f"stem.conv1.norm.{m[1]}"
    if m := _CONV.match(tv_name):
        return f"res{int(m[1]) + 1}.{m[2]}.conv{m[3]}.weight"
    if m := _BN.match(tv_name):
        return f"res{int(m[1]) + 1}.{m[2]}.conv{m[3]}.norm.{m[4]}"
    if m := _DS_CONV.match(tv_name):
        return f"res{int(m[1]) + 1}.{m[2]}.shortcut.weight"
    if m := _DS_BN.match(tv_name):
        return f"res{int(m[1]) + 1}.{m[2]}.shortcut.norm.{m[3]}"
    raise KeyError(tv_name)


def to_detectron2(tv_sd: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Rename a torchvision ResNet state_dict; classifier and BN counters are dropped."""
    out = {}
    for k, v in tv_sd.items():
        name = d2_name(k)
        if name is not None:
            out[name] = v
    return out
