"""The ViTDet bottom-up: detectron2's own ``ViT`` (``modeling/backbone/vit.py``, ViTDet's network)
carrying a timm ViT's weights, for detectron2's ``SimpleFeaturePyramid``.

Why detectron2's module: ViTDet's window attention pads each block's tokens to whole windows
after ``norm1`` (padded tokens are zeros, not the LayerNorm's bias), applies stochastic depth per
image, and resamples the position embedding once per forward from the pretraining grid (bicubic,
class entry dropped). Running its module gives all of that as ViTDet has it.

Weights. timm's ``Block`` (norm1, attn.qkv, attn.proj, norm2, mlp.fc1/fc2) and detectron2's
``Block`` hold the same tensors under the same names, ``patch_embed.proj`` too. ``pos_embed``
keeps its class-token entry (detectron2 drops it itself with ``pretrain_use_cls_token=True``);
the class token, final norm and head belong to the classifier and are dropped. No relative
position tables: timm's ViTs have none, so ``use_rel_pos=False`` unless asked for
(``MODEL.TIMM.REL_POS``: ViTDet's, zero-initialised, learned in detection). Singh et al.'s
ConvStem replaces ``patch_embed.proj`` in timm; it replaces detectron2's projection the same way,
so its tensor names map unchanged.
"""
from __future__ import annotations

import copy
import functools
import re
from typing import Dict, Optional, Sequence

import torch.nn as nn
from detectron2.modeling.backbone.vit import ViT

from rdet.core.errors import ConfigError

FRESH = re.compile(r"$^")  # every tensor of detectron2's ViT comes from the classifier
_CLASSIFIER = re.compile(r"^(cls_token|norm\.|fc_norm\.|head\.|head_drop\.)")


def d2_name(timm_name: str) -> Optional[str]:
    """The detectron2 ``ViT`` name of timm ViT tensor ``timm_name``; ``None`` for the class token
    and the classifier's final norm and head. Other names are returned as is (the caller checks
    them against the network: layer scale or register tokens, which ViTDet lacks, are refused)."""
    return None if _CLASSIFIER.match(timm_name) else timm_name


def vit_geometry(net: nn.Module) -> Dict:
    """detectron2 ``ViT`` keyword arguments for timm ViT ``net`` (built on the meta device: only
    its shapes are read). The LayerNorms keep timm's eps (1e-6, as ViTDet's configs set it)."""
    if getattr(net, "no_embed_class", False) or getattr(net, "num_prefix_tokens", 1) != 1:
        raise ConfigError("a timm ViT without exactly one class token: ViTDet's ViT expects "
                          "a position embedding with one class entry")
    blk = net.blocks[0]
    dim = net.embed_dim
    grid = net.patch_embed.grid_size
    if grid[0] != grid[1]:
        raise ConfigError(f"a timm ViT pretrained on a {grid[0]} x {grid[1]} grid: ViTDet's ViT takes square ones")
    patch = net.patch_embed.patch_size[0]
    return dict(patch_size=patch, embed_dim=dim, depth=len(net.blocks), num_heads=blk.attn.num_heads,
                mlp_ratio=blk.mlp.fc1.out_features / dim, qkv_bias=blk.attn.qkv.bias is not None,
                norm_layer=functools.partial(nn.LayerNorm, eps=blk.norm1.eps), pretrain_img_size=grid[0] * patch)


def _stem_of(net: nn.Module) -> Optional[nn.Module]:
    """A copy of ``net``'s patch projection on the CPU when it is not a plain conv (Singh et al.'s
    ConvStem), with fresh parameters (``net`` may live on the meta device); ``None`` otherwise."""
    proj = net.patch_embed.proj
    if isinstance(proj, nn.Conv2d):
        return None
    stem = copy.deepcopy(proj).to_empty(device="cpu")
    for m in stem.modules():
        if hasattr(m, "reset_parameters"):
            m.reset_parameters()
    return stem


class ViTBlocks(ViT):
    """detectron2's ``ViT`` (no relative positions, absolute position embedding with a class
    entry), output ``last_feat``: the last block's tokens as ``(N, C, H / 16, W / 16)``, before
    any final norm. ``num_layers``: its blocks (for layer-wise lr decay)."""

    @property
    def num_layers(self) -> int:
        return len(self.blocks)


def build_vit(timm_net: nn.Module, window_size: int = 0, global_blocks: Sequence[int] = (),
              drop_path_rate: float = 0.0, rel_pos_size: int = 0) -> ViTBlocks:
    """The detection bottom-up for timm ViT ``timm_net`` (its geometry and stem only), randomly
    initialised: windows of ``window_size`` tokens in every block except ``global_blocks`` (0:
    global attention everywhere), stochastic depth rising linearly to ``drop_path_rate``.
    ``rel_pos_size`` > 0: ViTDet's relative positions, zero-initialised, the global blocks' tables
    sized for ``rel_pos_size``-px images (ViTDet: 1024; others are interpolated)."""
    geo = vit_geometry(timm_net)
    bad = [b for b in global_blocks if not 0 <= b < geo["depth"]]
    if bad:
        raise ConfigError(f"MODEL.TIMM.GLOBAL_BLOCKS {bad[0]}: the ViT has blocks 0..{geo['depth'] - 1}")
    windowed = [i for i in range(geo["depth"]) if i not in set(global_blocks)] if window_size else []
    vit = ViTBlocks(drop_path_rate=drop_path_rate, use_abs_pos=True, use_rel_pos=rel_pos_size > 0,
                    rel_pos_zero_init=True, img_size=rel_pos_size or 1024, window_size=int(window_size),
                    window_block_indexes=windowed, pretrain_use_cls_token=True, **geo)
    stem = _stem_of(timm_net)
    if stem is not None:
        vit.patch_embed.proj = stem
    return vit
