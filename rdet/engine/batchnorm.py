"""BatchNorm policy while training (``MODEL.BN``).

* ``train``: ordinary BN, batch statistics per process (the paper's setting; with DDP each
  process normalises with its own share of the batch).
* ``fixed_stats``: BN layers normalise with their running statistics and never update them, while
  their affine weight and bias still train (unlike detectron2's ``FrozenBatchNorm2d``, which fixes
  those too); the result no longer depends on how the batch is split across processes.
* ``sync``: ``SyncBatchNorm`` across processes; PyTorch implements it for GPUs only.
"""
from __future__ import annotations

import torch

from rdet.config.schema import check_value, rule_of
from rdet.core.errors import ConfigError

BN_POLICIES = rule_of("MODEL.BN").choices  # the one list: the key's rule


def prepare_bn(model: torch.nn.Module, policy: str, rt) -> torch.nn.Module:
    check_value("MODEL.BN", policy)
    if policy == "sync" and rt.distributed:
        if rt.device.type == "cpu":
            raise ConfigError("MODEL.BN sync needs GPUs (PyTorch's SyncBatchNorm); use train or fixed_stats on CPU")
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return model


def apply_bn_mode(model: torch.nn.Module, policy: str) -> None:
    """Call after ``model.train()``: puts BN layers in eval mode under the ``fixed_stats`` policy."""
    if policy == "fixed_stats":
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.eval()
