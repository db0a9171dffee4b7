"""Registry and Classifier: every architecture builds with the metadata its spec claims, and the
Classifier computes exactly what the torchvision network computes on normalised input."""
import pytest
import torch

from rdet.backbones import (BACKBONE_REGISTRY, Classifier, IMAGENET_MEAN, IMAGENET_STD, create_classifier, get_spec,
                            list_backbones)
from rdet.core.errors import ArchError

PAPER_ARCHS = {"resnet18", "resnet50", "wide_resnet50_2", "wide_resnet50_4", "resnext50_32x4d", "densenet161",
               "vgg16_bn", "mobilenet_v2", "shufflenet_v2_x1_0", "mnasnet1_0"}


def test_registry_holds_the_paper_archs():
    assert PAPER_ARCHS <= set(list_backbones())
    assert all(name in BACKBONE_REGISTRY for name in PAPER_ARCHS)


@pytest.mark.parametrize("arch", sorted(PAPER_ARCHS | {"resnet34", "resnet101"}))
def test_spec_feature_dim_and_head(arch):
    spec = get_spec(arch)
    with torch.device("meta"):  # shapes only: no memory, no time
        model = Classifier(spec, num_classes=7)
        x = torch.empty(2, 3, 64, 64)
        feats = model.features(x)
        logits = model(x)
    assert feats.shape == (2, spec.feature_dim)
    assert logits.shape == (2, 7)
    assert (spec.d2 is not None) == arch.startswith(("resnet", "wide_resnet", "resnext"))


def test_wide_resnet50_4_is_four_times_wider():
    with torch.device("meta"):
        r50 = get_spec("resnet50").builder(1000)
        w4 = get_spec("wide_resnet50_4").builder(1000)
    assert w4.layer1[0].conv2.out_channels == 4 * r50.layer1[0].conv2.out_channels == 256
    assert w4.layer4[2].conv3.out_channels == r50.layer4[2].conv3.out_channels == 2048
    assert get_spec("wide_resnet50_4").d2.width_per_group == 256


def test_unknown_arch_lists_choices():
    with pytest.raises(ArchError, match="resnet50"):
        get_spec("resnet9000")


def test_classifier_matches_torchvision_on_normalised_input():
    model = create_classifier("resnet18", num_classes=5).eval()
    net = get_spec("resnet18").builder(5).eval()
    net.load_state_dict(model.torchvision_state_dict(), strict=True)
    x = torch.rand(3, 3, 48, 48)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        torch.testing.assert_close(model(x), net((x - mean) / std), rtol=0, atol=0)


def test_torchvision_state_dict_round_trip_and_reset_head():
    a = create_classifier("mobilenet_v2", num_classes=4)
    sd = a.torchvision_state_dict()
    assert "classifier.1.weight" in sd and sd["classifier.1.weight"].shape == (4, 1280)
    b = create_classifier("mobilenet_v2", num_classes=4)
    b.load_torchvision_state_dict(sd)
    for k, v in b.torchvision_state_dict().items():
        assert torch.equal(v, sd[k]), k
    b.reset_head(9)
    assert b.num_classes == 9 and b.head.in_features == 1280
