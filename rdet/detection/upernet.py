"""UperNet (Xiao et al., "Unified Perceptual Parsing for Scene Understanding", ECCV 2018) as a
detectron2 semantic segmentation head, and the backbone that feeds it the raw stages.

The head, as the paper describes it and as the ADE20K baselines of ResNet, Swin and ConvNeXt use
it: a Pyramid Pooling Module (PSPNet) on the last stage (average-pooled to 1x1, 2x2, 3x3, 6x6,
each 1x1-convolved to 512 channels, upsampled and concatenated with the stage, then a 3x3 conv),
a top-down FPN over the other stages (1x1 lateral convs to 512, 3x3 output convs), every level
upsampled to the finest (stride 4), concatenated, fused by a 3x3 conv, dropout 0.1 and a 1x1
classifier. Every conv is conv + norm + ReLU. The optional auxiliary head the published recipes
train with (an FCN on the stride-16 stage: 3x3 conv to 256 channels, dropout, 1x1 classifier;
loss weight 0.4) helps optimisation only and is not used for prediction.

``build_bottom_up_backbone``: UperNet needs the stages themselves (its own FPN replaces
detectron2's), so it builds the FPN backbone ``MODEL.BOTTOM_UP.FROM`` names (a ResNet's
``build_resnet_fpn_backbone`` or a ConvNeXt / Swin's ``build_timm_fpn_backbone``) and keeps its
``bottom_up`` (detectron2's ``FPN`` attribute) alone. Parameter names stay
``backbone.bottom_up.*``, as in a detection model, so the same converted file loads.
"""
from __future__ import annotations

from typing import Dict, List

import torch
import torch.nn as nn
import torch.nn.functional as F
from detectron2.config import CfgNode
from detectron2.layers import Conv2d, ShapeSpec, get_norm
from detectron2.modeling import BACKBONE_REGISTRY, SEM_SEG_HEADS_REGISTRY, Backbone

BOTTOM_UP_BACKBONE = "build_bottom_up_backbone"


def add_upernet_config(cfg: CfgNode) -> None:
    """``MODEL.UPERNET`` (the head; ``MODEL.SEM_SEG_HEAD`` gives classes, features, norm, ignore
    value, loss weight) and ``MODEL.BOTTOM_UP`` (whose stages ``build_bottom_up_backbone`` keeps)."""
    cfg.MODEL.UPERNET = CfgNode()
    cfg.MODEL.UPERNET.CHANNELS = 512
    cfg.MODEL.UPERNET.POOL_SCALES = [1, 2, 3, 6]
    cfg.MODEL.UPERNET.DROPOUT = 0.1
    # Auxiliary FCN head (training only); weight 0 builds none. Published recipes: res4, 256, 0.4.
    cfg.MODEL.UPERNET.AUX_IN_FEATURE = "res4"
    cfg.MODEL.UPERNET.AUX_CHANNELS = 256
    cfg.MODEL.UPERNET.AUX_LOSS_WEIGHT = 0.0
    cfg.MODEL.BOTTOM_UP = CfgNode()
    cfg.MODEL.BOTTOM_UP.FROM = "build_resnet_fpn_backbone"


def _conv(cin: int, cout: int, k: int, norm: str) -> Conv2d:
    """k x k conv (same padding) + norm + ReLU; a bias only without a norm."""
    return Conv2d(cin, cout, k, padding=k // 2, bias=not norm, norm=get_norm(norm, cout), activation=F.relu)


class BottomUp(Backbone):
    """The stages of a detectron2 FPN backbone, with the FPN's input padding (so every stage's
    size is the image's / stride, as the FPN backbone would see it)."""

    def __init__(self, fpn: Backbone):
        super().__init__()
        self.bottom_up = fpn.bottom_up
        self._size_divisibility = fpn.size_divisibility
        self._padding_constraints = dict(getattr(fpn, "padding_constraints", {}) or {})

    @property
    def size_divisibility(self) -> int:
        return self._size_divisibility

    @property
    def padding_constraints(self) -> Dict[str, int]:
        return self._padding_constraints

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        return self.bottom_up(x)

    def output_shape(self) -> Dict[str, ShapeSpec]:
        return self.bottom_up.output_shape()


@BACKBONE_REGISTRY.register()
def build_bottom_up_backbone(cfg: CfgNode, input_shape: ShapeSpec) -> Backbone:
    """The stages of ``MODEL.BOTTOM_UP.FROM``'s FPN backbone (res2..res5, strides 4..32)."""
    return BottomUp(BACKBONE_REGISTRY.get(cfg.MODEL.BOTTOM_UP.FROM)(cfg, input_shape))


@SEM_SEG_HEADS_REGISTRY.register()
class UperNetHead(nn.Module):
    """features ``{res2..res5: (N, C_i, H/s_i, W/s_i)}`` -> training: ``(None, {"loss_sem_seg",
    "loss_sem_seg_aux"})`` with targets ``(N, H, W)`` long (ignore value ``IGNORE_VALUE``);
    inference: ``(logits (N, classes, H, W), {})`` at the padded input size."""

    def __init__(self, cfg: CfgNode, input_shape: Dict[str, ShapeSpec]):
        super().__init__()
        h, u = cfg.MODEL.SEM_SEG_HEAD, cfg.MODEL.UPERNET
        shapes = sorted(((k, v) for k, v in input_shape.items() if k in h.IN_FEATURES), key=lambda kv: kv[1].stride)
        self.in_features: List[str] = [k for k, _ in shapes]
        chans = [v.channels for _, v in shapes]
        self.common_stride = shapes[0][1].stride
        self.ignore_value, self.loss_weight = h.IGNORE_VALUE, h.LOSS_WEIGHT
        c, norm = u.CHANNELS, h.NORM
        self.ppm = nn.ModuleList(nn.Sequential(nn.AdaptiveAvgPool2d(s), _conv(chans[-1], c, 1, norm))
                                 for s in u.POOL_SCALES)
        self.ppm_out = _conv(chans[-1] + len(u.POOL_SCALES) * c, c, 3, norm)
        self.lateral = nn.ModuleList(_conv(ch, c, 1, norm) for ch in chans[:-1])
        self.fpn_out = nn.ModuleList(_conv(c, c, 3, norm) for _ in chans[:-1])
        self.fuse = _conv(len(chans) * c, c, 3, norm)
        self.dropout = nn.Dropout2d(u.DROPOUT)
        self.predictor = Conv2d(c, h.NUM_CLASSES, 1)
        self.aux_weight, self.aux_feature = u.AUX_LOSS_WEIGHT, u.AUX_IN_FEATURE
        self.aux = None
        if self.aux_weight > 0:
            aux_shape = input_shape[u.AUX_IN_FEATURE]
            self.aux_stride = aux_shape.stride
            self.aux = nn.Sequential(_conv(aux_shape.channels, u.AUX_CHANNELS, 3, norm), nn.Dropout2d(u.DROPOUT),
                                     Conv2d(u.AUX_CHANNELS, h.NUM_CLASSES, 1))
        for m in self.modules():
            if isinstance(m, Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        for p in (self.predictor,) + ((self.aux[-1],) if self.aux is not None else ()):
            nn.init.normal_(p.weight, 0, 0.01)

    def layers(self, features: Dict[str, torch.Tensor]) -> torch.Tensor:
        xs = [features[f] for f in self.in_features]
        top = xs[-1]
        pooled = [F.interpolate(b(top), size=top.shape[-2:], mode="bilinear", align_corners=False) for b in self.ppm]
        levels = [self.ppm_out(torch.cat([top] + pooled, dim=1))]
        for i in range(len(xs) - 2, -1, -1):  # top-down: each lateral plus the coarser level upsampled
            lat = self.lateral[i](xs[i])
            levels.insert(0, lat + F.interpolate(levels[0], size=lat.shape[-2:], mode="bilinear",
                                                 align_corners=False))
        outs = [self.fpn_out[i](lv) for i, lv in enumerate(levels[:-1])] + [levels[-1]]
        size = outs[0].shape[-2:]
        outs = [outs[0]] + [F.interpolate(o, size=size, mode="bilinear", align_corners=False) for o in outs[1:]]
        return self.predictor(self.dropout(self.fuse(torch.cat(outs, dim=1))))

    def forward(self, features: Dict[str, torch.Tensor], targets=None):
        x = self.layers(features)
        if not self.training:
            return F.interpolate(x, scale_factor=self.common_stride, mode="bilinear", align_corners=False), {}
        losses = {"loss_sem_seg": self._loss(x, targets, self.common_stride) * self.loss_weight}
        if self.aux is not None:
            aux = self.aux(features[self.aux_feature])
            losses["loss_sem_seg_aux"] = self._loss(aux, targets, self.aux_stride) * self.aux_weight
        return None, losses

    def _loss(self, logits: torch.Tensor, targets: torch.Tensor, stride: int) -> torch.Tensor:
        logits = F.interpolate(logits.float(), scale_factor=stride, mode="bilinear", align_corners=False)
        return F.cross_entropy(logits, targets, reduction="mean", ignore_index=self.ignore_value)
