"""The backbone registry: one table of classifier architectures, shared by pretraining, transfer
and conversion to Detectron2.

A registered object is a *builder*: a function ``builder(num_classes: int) -> nn.Module`` that
returns a randomly initialised classifier (torchvision's CNNs, ``models.py``; timm's ConvNeXt, Swin
and ViT, ``timm_models.py``) taking normalised RGB ``(N, 3, H, W)`` input. The decorator
:func:`register_backbone` attaches a :class:`BackboneSpec` to the builder (``builder.spec``), so
the metadata every consumer needs lives beside the model (timm-style): family, feature dimension,
where the classifier head is, input normalisation, test-time preprocessing, whether it has
BatchNorm, the fine-tuning recipe it should train with, each stage's stride and width (what a
detection backbone taps) and, for ResNets, the Detectron2 ResNet geometry the converter emits.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional, Tuple

import torch.nn as nn
from fvcore.common.registry import Registry

from rdet.core.errors import ArchError

BACKBONE_REGISTRY = Registry("BACKBONE")
BACKBONE_REGISTRY.__doc__ = """
Registry of classifier builders. Each builder takes ``num_classes`` and returns an ``nn.Module``
mapping normalised RGB images ``(N, 3, H, W)`` to logits ``(N, num_classes)``; its ``spec``
attribute is a :class:`BackboneSpec`.
"""

# torchvision / robustness-library ImageNet statistics, RGB, pixels in [0, 1].
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class D2Geometry:
    """What Detectron2's ``build_resnet_backbone`` needs to rebuild a torchvision ResNet."""

    depth: int  # 18, 34, 50, 101
    res2_out_channels: int  # 64 for BasicBlock nets, 256 for Bottleneck nets
    width_per_group: int = 64  # bottleneck width of res2 per group (128 for WRN-50-2)
    num_groups: int = 1  # ResNeXt cardinality


@dataclass(frozen=True)
class Stage:
    """One feature map a detection backbone can tap: the module whose output it is, its stride in
    input pixels, its channels and its layout."""

    module: str  # dotted path inside the network, e.g. "layer1", "stages.0", "layers.3", "blocks.11"
    stride: int
    channels: int
    # NCHW (CNNs, ConvNeXt) | NHWC (timm's Swin stages) | NLC (ViT tokens, class token first)
    fmt: str = "NCHW"


@dataclass(frozen=True)
class BackboneSpec:
    name: str
    paper_name: str  # as printed in the paper's tables, e.g. "ResNet-50", "WRN-50-2"
    feature_dim: int  # width of the features entering the classifier head
    classifier: str  # dotted path of the final nn.Linear, e.g. "fc" or "classifier.6"
    mean: Tuple[float, float, float] = IMAGENET_MEAN
    std: Tuple[float, float, float] = IMAGENET_STD
    d2: Optional[D2Geometry] = None  # None: not convertible to a Detectron2 ResNet
    # Extra prefix the robustness library nests this arch's weights under (non-ResNets: "model.").
    robustness_prefix: str = ""
    family: str = "resnet"  # resnet | densenet | vgg | mobilenet | shufflenet | mnasnet | convnext | swin | vit
    # BatchNorm layers present: MODEL.BN policies apply. LayerNorm models (ConvNeXt, Swin, ViT) have
    # none, and a MODEL.BN other than "train" is refused for them (rdet.engine.batchnorm).
    batchnorm: bool = True
    # Test-time preprocessing the weights were evaluated with: Resize(size / crop_pct) with this
    # interpolation, then CenterCrop(size) (torchvision's ResNets: bilinear, 0.875; timm: bicubic).
    interpolation: str = "bilinear"
    crop_pct: float = 0.875
    input_size: int = 224  # the resolution the family is built for (position embeddings, windows)
    # Feature maps for detection, shallow to deep (ResNets: res2..res5; ViT: its last block, stride 16).
    stages: Tuple[Stage, ...] = ()
    # The fine-tuning recipe this family should train with: rdet/configs/recipe_<name>.yaml
    # ("paper_sgd" = the paper's SGD + step schedule, the defaults; see rdet.engine.optim).
    recipe: str = "paper_sgd"
    timm_name: Optional[str] = None  # timm.create_model name, for the timm families
    builder: Callable[[int], nn.Module] = field(default=None, repr=False, compare=False)


def register_backbone(**spec_kwargs) -> Callable:
    """Decorator: register ``builder`` under its function name with a :class:`BackboneSpec`."""

    def wrap(builder: Callable[[int], nn.Module]) -> Callable[[int], nn.Module]:
        builder.spec = BackboneSpec(name=builder.__name__, builder=builder, **spec_kwargs)
        BACKBONE_REGISTRY.register(builder)
        return builder

    return wrap


def list_backbones(family: Optional[str] = None) -> list[str]:
    """Registered names, sorted; only those of ``family`` (e.g. "vit") when given."""
    return sorted(name for name, b in BACKBONE_REGISTRY if family is None or b.spec.family == family)


def list_families() -> list[str]:
    return sorted({b.spec.family for _, b in BACKBONE_REGISTRY})


def paper_name_of(arch: str) -> Optional[str]:
    """The paper's name of a registered architecture (``ResNet-50``); None for an unknown one."""
    return BACKBONE_REGISTRY.get(arch).spec.paper_name if arch in BACKBONE_REGISTRY else None


def get_spec(name: str) -> BackboneSpec:
    """Spec of a registered architecture; an :class:`ArchError` naming the choices otherwise."""
    if name not in BACKBONE_REGISTRY:
        raise ArchError(f"unknown architecture {name!r}; choose from: {', '.join(list_backbones())}")
    return BACKBONE_REGISTRY.get(name).spec



def check_bn_policy(arch: str, policy: str) -> None:
    """``MODEL.BN`` other than "train" on an arch without BatchNorm (ConvNeXt, Swin, ViT: LayerNorm)
    is refused: the policy would have nothing to act on, and a run must not claim one it never had."""
    spec = get_spec(arch)
    if policy != "train" and not spec.batchnorm:
        raise ArchError(f"MODEL.BN {policy}: {arch} has no BatchNorm layers ({spec.family} uses LayerNorm, which "
                        f"has no running statistics); leave MODEL.BN train")
