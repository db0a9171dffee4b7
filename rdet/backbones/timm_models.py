"""timm's ConvNeXt, Swin and ViT in rdet's registry, with Singh et al.'s ConvStem variants.

The robust ImageNet models people pick today (RobustBench's ImageNet Linf table) are these
families, built with ``timm.create_model`` (RobustBench and the releases do the same), so their
state dicts are timm's own. Every builder returns a randomly initialised timm model for
``num_classes`` classes that takes *normalised* RGB ``(N, 3, H, W)``; the normalisation is inside
:class:`rdet.backbones.Classifier`, so rdet's models take RGB in [0, 1] as for the CNNs.

Input size. Every model is built for 224 px (its ViT position embeddings and Swin windows have
the released shapes, so 224-px checkpoints load unchanged) and accepts other sizes: ConvNeXt is
fully convolutional; Swin and ViT are built with timm's ``dynamic_img_size=True`` (ViT resamples
its position embeddings to the input's patch grid on each forward, Swin pads to whole windows and
builds its shifted-window masks for the input). Sides must be multiples of the patch size (16 for
ViT, 4 for Swin; 32 keeps every Swin stage whole); tests run at 32 px.

ConvStem (Singh, Croce and Hein, NeurIPS 2023, "Revisiting Adversarial Training for ImageNet"):
the patchify stem replaced by a few 3x3 stride-2 convolutions, each followed by a channels-first
LayerNorm and GELU. The module layout (``.stem`` holding an ``nn.Sequential`` of conv, LN, GELU,
...) is the release's, so its tensor names are the release's (``stem.stem.0.weight`` for
ConvNeXt, ``patch_embed.proj.stem.0.weight`` for ViT).
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple

import torch.nn as nn

from rdet.backbones.registry import Stage, register_backbone

# RobustBench evaluates these families with BicubicRes256Crop224: Resize(256, bicubic), CenterCrop(224).
_TIMM_PREPROCESS = dict(interpolation="bicubic", crop_pct=224 / 256, batchnorm=False)


class ConvStem(nn.Module):
    """``stem``: [conv3x3(stride s) -> LayerNorm2d -> GELU] per ``(channels, stride)``, then an
    optional 1x1 conv to ``out_channels``; ``(N, 3, H, W) -> (N, C, H / prod(s), W / prod(s))``."""

    def __init__(self, layers: Sequence[Tuple[int, int]], out_channels: Optional[int] = None):
        from timm.layers import LayerNorm2d

        super().__init__()
        mods, in_ch = [], 3
        for ch, stride in layers:
            # LayerNorm2d: LayerNorm over channels at every pixel, eps 1e-6 (the release's LayerNorm)
            mods += [nn.Conv2d(in_ch, ch, 3, stride, 1), LayerNorm2d(ch, eps=1e-6), nn.GELU()]
            in_ch = ch
        if out_channels is not None:
            mods.append(nn.Conv2d(in_ch, out_channels, 1))
        self.stem = nn.Sequential(*mods)

    def forward(self, x):
        return self.stem(x)


def _create(timm_name: str, num_classes: int, **kwargs) -> nn.Module:
    import timm

    # pretrained=False: rdet never downloads from a model hub; weights come from the catalog or a file
    return timm.create_model(timm_name, pretrained=False, num_classes=num_classes, **kwargs)


def _register(name: str, timm_name: str, paper_name: str, family: str, feature_dim: int, classifier: str,
              stages: Tuple[Stage, ...], recipe: str, kwargs: dict, stem=None) -> None:
    def builder(num_classes: int = 1000) -> nn.Module:
        net = _create(timm_name, num_classes, **kwargs)
        if stem is not None:
            stem(net)
        return net

    builder.__name__ = builder.__qualname__ = name
    builder.__doc__ = f"{paper_name}: timm's {timm_name}{' ' + str(kwargs) if kwargs else ''}."
    register_backbone(paper_name=paper_name, family=family, feature_dim=feature_dim, classifier=classifier,
                      stages=stages, recipe=recipe, timm_name=timm_name, **_TIMM_PREPROCESS)(builder)


# -- ConvNeXt (Liu et al. 2022): 4 stages at strides 4-32, LayerNorm, head.fc after pooling + LN ----------
_CONVNEXT = {  # name: (dims, ConvStem layers or None)
    "atto": ((40, 80, 160, 320), None), "femto": ((48, 96, 192, 384), None),
    "pico": ((64, 128, 256, 512), None), "nano": ((80, 160, 320, 640), None),
    "tiny": ((96, 192, 384, 768), ((48, 2), (96, 2))), "small": ((96, 192, 384, 768), ((48, 2), (96, 2))),
    "base": ((128, 256, 512, 1024), ((64, 2), (96, 2), (128, 1))),
    "large": ((192, 384, 768, 1536), ((96, 2), (144, 2), (192, 1))),
}
for _size, (_dims, _cvst) in _CONVNEXT.items():
    _stages = tuple(Stage(f"stages.{i}", 4 * 2 ** i, d) for i, d in enumerate(_dims))
    _label = f"ConvNeXt-{_size[0].upper()}" if _size in ("tiny", "small", "base", "large") else f"ConvNeXt-{_size}"
    _register(f"convnext_{_size}", f"convnext_{_size}", _label, "convnext", _dims[-1], "head.fc", _stages,
              "adamw_cosine", {})
    if _cvst is not None:  # Singh et al.: ConvNeXt-T/S stem 48-96 (stride 4), B 64-96-128, L 96-144-192
        def _set_stem(net, layers=_cvst):
            net.stem = ConvStem(layers)

        _register(f"convnext_{_size}_convstem", f"convnext_{_size}", f"{_label} + ConvStem", "convnext", _dims[-1],
                  "head.fc", _stages, "adamw_cosine", {}, stem=_set_stem)

# -- Swin (Liu et al. 2021): patch 4, window 7, 4 stages at strides 4-32 (NHWC outputs) -------------------
_SWIN = {"tiny": 96, "small": 96, "base": 128, "large": 192}
for _size, _embed in _SWIN.items():
    _stages = tuple(Stage(f"layers.{i}", 4 * 2 ** i, _embed * 2 ** i, fmt="NHWC") for i in range(4))
    _register(f"swin_{_size}", f"swin_{_size}_patch4_window7_224", f"Swin-{_size[0].upper()}", "swin", _embed * 8,
              "head.fc", _stages, "adamw_cosine", {"dynamic_img_size": True})

# -- ViT (Dosovitskiy et al. 2021; timm's DeiT-S is the same network as ViT-S): patch 16, class token --------
_VIT = {"tiny": (192, None), "small": (384, ((48, 2), (96, 2), (192, 2), (384, 2))),
        "base": (768, ((48, 2), (96, 2), (192, 2), (384, 2)))}
for _size, (_embed, _cvst) in _VIT.items():
    # one feature map for a ViTDet-style detector: the last block's tokens (class token first), stride 16
    _stages = (Stage("blocks.11", 16, _embed, fmt="NLC"),)
    _label = f"ViT-{_size[0].upper()}"
    _register(f"vit_{_size}", f"vit_{_size}_patch16_224", _label, "vit", _embed, "head", _stages,
              "adamw_cosine_lld", {"dynamic_img_size": True})
    if _cvst is not None:  # Singh et al.: four stride-2 convs to 384 channels (stride 16), then 1x1 to width
        def _set_stem(net, layers=_cvst, width=_embed):
            net.patch_embed.proj = ConvStem(layers, out_channels=width)

        _register(f"vit_{_size}_convstem", f"vit_{_size}_patch16_224", f"{_label} + ConvStem", "vit", _embed, "head",
                  _stages, "adamw_cosine_lld", {"dynamic_img_size": True}, stem=_set_stem)
