"""The transfer model: a pretrained registry backbone with a fresh linear head.

Fixed-feature transfer freezes the backbone AND keeps its BatchNorm layers in eval mode. (The
paper's code only freezes the weights, so BN running statistics drift towards the target data
while the "frozen" features change under the head; rdet keeps them truly fixed.)
"""
from __future__ import annotations

from typing import Any, Dict, Tuple

import torch

from rdet.backbones import Classifier, create_classifier, load_classifier
from rdet.core.errors import ConfigError

MODES = ("fixed", "full")


def build_transfer_model(cfg, num_classes: int) -> Tuple[Classifier, Dict[str, Any]]:
    """``(model, backbone meta)``: weights from MODEL.WEIGHTS (catalog name or file), new head."""
    if cfg.TRANSFER.MODE not in MODES:
        raise ConfigError(f"TRANSFER.MODE must be fixed or full, not {cfg.TRANSFER.MODE!r}")
    meta = {"arch": cfg.MODEL.ARCH, "norm": None, "eps": None, "method": None, "source": "random init"}
    if not cfg.MODEL.WEIGHTS:
        model = create_classifier(cfg.MODEL.ARCH, num_classes)
    else:
        model, loaded = load_classifier(cfg.MODEL.ARCH, num_classes, cfg.MODEL.WEIGHTS,
                                        allow_pickle=cfg.MODEL.ALLOW_PICKLE, input_norm=cfg.MODEL.INPUT_NORM,
                                        variant=cfg.MODEL.WEIGHTS_VARIANT)
        meta.update({k: loaded.meta.get(k) for k in ("norm", "eps", "method", "input_norm", "weights_variant")},
                    source=str(cfg.MODEL.WEIGHTS))
    model.reset_head(num_classes)  # always a fresh head, as the paper
    if cfg.TRANSFER.MODE == "fixed":
        model.body.requires_grad_(False)
    return model, meta


def set_train_mode(model: torch.nn.Module, mode: str) -> None:
    """Train mode for what is trained; the fixed backbone stays in eval mode (frozen BN)."""
    model.train()
    if mode == "fixed":
        getattr(model, "module", model).body.eval()


def trainable_parameters(model: Classifier, mode: str):
    return model.head.parameters() if mode == "fixed" else model.parameters()
