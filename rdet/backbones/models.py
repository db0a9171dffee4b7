"""The registered architectures: the paper's four ResNets, the six other torchvision families of
its Table 2, and ResNet-34/101 for detection. All are torchvision's own implementations, so their
state_dicts are torchvision's (and the robustness library's, once its prefixes are stripped).
"""
from __future__ import annotations

import torch.nn as nn
from torchvision import models as tvm
from torchvision.models.resnet import Bottleneck, ResNet

from rdet.backbones.registry import D2Geometry, Stage, register_backbone


def _resnet_stages(res2_channels: int):
    """layer1..layer4 = Detectron2's res2..res5: strides 4-32, widths doubling from res2's."""
    return tuple(Stage(f"layer{i + 1}", 4 * 2 ** i, res2_channels * 2 ** i) for i in range(4))


@register_backbone(paper_name="ResNet-18", feature_dim=512, classifier="fc",
                   stages=_resnet_stages(64), d2=D2Geometry(depth=18, res2_out_channels=64))
def resnet18(num_classes: int = 1000) -> nn.Module:
    return tvm.resnet18(num_classes=num_classes)


@register_backbone(paper_name="ResNet-34", feature_dim=512, classifier="fc",
                   stages=_resnet_stages(64), d2=D2Geometry(depth=34, res2_out_channels=64))
def resnet34(num_classes: int = 1000) -> nn.Module:
    return tvm.resnet34(num_classes=num_classes)


@register_backbone(paper_name="ResNet-50", feature_dim=2048, classifier="fc",
                   stages=_resnet_stages(256), d2=D2Geometry(depth=50, res2_out_channels=256))
def resnet50(num_classes: int = 1000) -> nn.Module:
    return tvm.resnet50(num_classes=num_classes)


@register_backbone(paper_name="ResNet-101", feature_dim=2048, classifier="fc",
                   stages=_resnet_stages(256), d2=D2Geometry(depth=101, res2_out_channels=256))
def resnet101(num_classes: int = 1000) -> nn.Module:
    return tvm.resnet101(num_classes=num_classes)


@register_backbone(paper_name="WRN-50-2", feature_dim=2048, classifier="fc",
                   stages=_resnet_stages(256), d2=D2Geometry(depth=50, res2_out_channels=256, width_per_group=128))
def wide_resnet50_2(num_classes: int = 1000) -> nn.Module:
    return tvm.wide_resnet50_2(num_classes=num_classes)


@register_backbone(paper_name="WRN-50-4", feature_dim=2048, classifier="fc",
                   stages=_resnet_stages(256), d2=D2Geometry(depth=50, res2_out_channels=256, width_per_group=256))
def wide_resnet50_4(num_classes: int = 1000) -> nn.Module:
    # Not in torchvision: the robustness library builds it as a Bottleneck ResNet-50 whose
    # bottlenecks are 4x wider (width_per_group = 64 * 4).
    return ResNet(Bottleneck, [3, 4, 6, 3], num_classes=num_classes, width_per_group=64 * 4)


@register_backbone(paper_name="ResNeXt50", feature_dim=2048, classifier="fc",
                   stages=_resnet_stages(256),
                   d2=D2Geometry(depth=50, res2_out_channels=256, width_per_group=4, num_groups=32),
                   robustness_prefix="model.")
def resnext50_32x4d(num_classes: int = 1000) -> nn.Module:
    return tvm.resnext50_32x4d(num_classes=num_classes)


@register_backbone(paper_name="DenseNet-161", feature_dim=2208, classifier="classifier",
                   robustness_prefix="model.", family="densenet")
def densenet161(num_classes: int = 1000) -> nn.Module:
    return tvm.densenet161(num_classes=num_classes)


@register_backbone(paper_name="VGG16-bn", feature_dim=4096, classifier="classifier.6",
                   robustness_prefix="model.", family="vgg")
def vgg16_bn(num_classes: int = 1000) -> nn.Module:
    return tvm.vgg16_bn(num_classes=num_classes)


@register_backbone(paper_name="MobileNet-v2", feature_dim=1280, classifier="classifier.1",
                   robustness_prefix="model.", family="mobilenet")
def mobilenet_v2(num_classes: int = 1000) -> nn.Module:
    return tvm.mobilenet_v2(num_classes=num_classes)


@register_backbone(paper_name="ShuffleNet", feature_dim=1024, classifier="fc",
                   robustness_prefix="model.", family="shufflenet")
def shufflenet_v2_x1_0(num_classes: int = 1000) -> nn.Module:
    return tvm.shufflenet_v2_x1_0(num_classes=num_classes)


@register_backbone(paper_name="MNASNET", feature_dim=1280, classifier="classifier.1",
                   robustness_prefix="model.", family="mnasnet")
def mnasnet1_0(num_classes: int = 1000) -> nn.Module:
    return tvm.mnasnet1_0(num_classes=num_classes)
