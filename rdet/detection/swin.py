"""The Swin FPN bottom-up: detectron2's own ``SwinTransformer`` (``modeling/backbone/swin.py``, the
Swin authors' detection code) carrying a timm Swin's weights.

Why not timm's Swin: detection images are not multiples of the 7-token window. The authors'
network pads each stage to whole windows and then shifts; timm shifts and then pads, so tokens
wrapped round from the opposite edge attend where they must not. A timm model built for 224 px
also turns its shift off in the 7 x 7 last stage, where the authors shift every odd block at any
size, and the authors' detector puts a LayerNorm on every output stage (``norm0..norm3``). Using
detectron2's module gives all three as the reference has them.

Weights. timm's tensors map onto detectron2's one to one (same block layout, same names) except
the patch merging that ends stage ``i``: timm >= 0.9 holds it at the start of the next stage
(``layers.{i+1}.downsample``), detectron2 at the end of its own (``layers.{i}.downsample``).
timm's final ``norm`` and ``head`` belong to the classifier and are dropped. The output norms
have no counterpart in a classifier: they start as detectron2 initialises them (weight 1, bias 0),
as in the authors' detectors. ``relative_position_index`` is a constant buffer, built here.
"""
from __future__ import annotations

import math
import re
from typing import Dict, Optional, Sequence

import torch
import torch.nn as nn
from detectron2.modeling.backbone.swin import SwinTransformer

from rdet.core.errors import ConfigError

STAGES = ("res2", "res3", "res4", "res5")  # strides 4..32, named as detectron2's ResNet so the FPN bases apply
# Tensors of the detection network that no classifier checkpoint holds: the output norms and the
# relative position index (a buffer computed from the window size).
FRESH = re.compile(r"^norm\d\.|\.relative_position_index$")
_MERGE = re.compile(r"^layers\.(\d+)\.downsample\.(.+)$")
_CLASSIFIER = re.compile(r"^(norm|head)\.")


def d2_name(timm_name: str) -> Optional[str]:
    """The detectron2 ``SwinTransformer`` name of timm >= 0.9 Swin tensor ``timm_name``; ``None``
    for the classifier's final norm and head. Any other name is returned as is (the caller checks
    it against the network)."""
    if _CLASSIFIER.match(timm_name):
        return None
    m = _MERGE.match(timm_name)
    if m:
        return f"layers.{int(m[1]) - 1}.downsample.{m[2]}"
    return timm_name


def swin_geometry(net: nn.Module) -> Dict:
    """detectron2 ``SwinTransformer`` keyword arguments for timm Swin ``net`` (built on the meta
    device: only its shapes are read). The window is read from the trained relative-position
    table, ``(2w - 1)^2`` rows, not from the block (timm shrinks it to a stage smaller than it)."""
    if getattr(net, "absolute_pos_embed", None) is not None:
        raise ConfigError("a timm Swin with an absolute position embedding: rdet's detection Swin has none")
    blocks = [layer.blocks[0] for layer in net.layers]
    table = blocks[0].attn.relative_position_bias_table.shape[0]
    window = (int(math.isqrt(table)) + 1) // 2
    return dict(patch_size=net.patch_embed.patch_size[0], embed_dim=net.embed_dim,
                depths=tuple(len(layer.blocks) for layer in net.layers),
                num_heads=tuple(b.attn.num_heads for b in blocks), window_size=window,
                mlp_ratio=blocks[0].mlp.fc1.out_features / blocks[0].norm1.normalized_shape[0],
                qkv_bias=blocks[0].attn.qkv.bias is not None,
                patch_norm=not isinstance(net.patch_embed.norm, nn.Identity))


class SwinStages(SwinTransformer):
    """detectron2's ``SwinTransformer`` with its outputs named ``res2..res5`` (strides 4..32, NCHW,
    each after its output LayerNorm). Its tensor names are detectron2's own, so a converted file
    names ``backbone.bottom_up.<detectron2 name>``."""

    def __init__(self, out_features: Sequence[str] = STAGES, **kwargs):
        unknown = [n for n in out_features if n not in STAGES]
        if unknown:
            raise ConfigError(f"MODEL.TIMM.OUT_FEATURES {unknown[0]}: Swin has stages {', '.join(STAGES)}")
        indices = tuple(STAGES.index(n) for n in out_features)
        super().__init__(out_indices=indices, **kwargs)
        self._out_features = list(out_features)
        self._out_feature_channels = {STAGES[i]: self.num_features[i] for i in indices}
        self._out_feature_strides = {STAGES[i]: 2 ** (i + 2) for i in indices}
        # Stages after the last one used would hold parameters without gradients (DDP refuses them).
        last = max(indices)
        self.layers = self.layers[:last + 1]
        self.layers[last].downsample = None
        self.num_layers = last + 1

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        outs = super().forward(x)  # "p{i}" for i in out_indices
        return {STAGES[int(k[1:])]: v for k, v in outs.items()}


def build_swin_stages(timm_net: nn.Module, out_features: Sequence[str] = STAGES,
                      drop_path_rate: float = 0.0) -> SwinStages:
    """The detection bottom-up for timm Swin ``timm_net`` (its geometry only), randomly initialised
    as detectron2 initialises it; stochastic depth ``drop_path_rate`` over all blocks (linear, as
    timm and detectron2 schedule it)."""
    return SwinStages(out_features, drop_path_rate=drop_path_rate, **swin_geometry(timm_net))
