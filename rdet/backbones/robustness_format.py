"""Writing checkpoints in the robustness library's exact layout.

rdet reads these (the paper's released models); writing them lets tests, benchmarks and users
produce byte-for-byte the structure the release has, and export rdet-trained models for code
that expects the robustness library's format.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, Optional, Sequence

import torch

from rdet.core.atomic import torch_save
from rdet.backbones.registry import IMAGENET_MEAN, IMAGENET_STD, get_spec


def robustness_state_dict(tv_sd: Dict[str, torch.Tensor], arch: str,
                          mean: Sequence[float] = IMAGENET_MEAN,
                          std: Sequence[float] = IMAGENET_STD) -> Dict[str, torch.Tensor]:
    """``module.normalizer.*``, ``module.model.*``, ``module.attacker.normalize.*`` and the
    duplicate ``module.attacker.model.*``, with the extra ``model.`` non-ResNets carry."""
    inner = get_spec(arch).robustness_prefix
    mean_t = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)
    out: Dict[str, torch.Tensor] = {"module.normalizer.new_mean": mean_t, "module.normalizer.new_std": std_t}
    for k, v in tv_sd.items():
        out[f"module.model.{inner}{k}"] = v
    out["module.attacker.normalize.new_mean"] = mean_t.clone()
    out["module.attacker.normalize.new_std"] = std_t.clone()
    for k, v in tv_sd.items():
        out[f"module.attacker.model.{inner}{k}"] = v.clone()
    return out


def save_robustness_checkpoint(tv_sd: Dict[str, torch.Tensor], arch: str, path: str | Path,
                               epoch: int = 90, optimizer: Optional[dict] = None) -> None:
    """Save as the robustness library does: ``{'model', 'optimizer', 'schedule', 'epoch'}``."""
    torch_save({"model": robustness_state_dict(tv_sd, arch), "optimizer": optimizer or {},
                "schedule": None, "epoch": epoch}, path)
