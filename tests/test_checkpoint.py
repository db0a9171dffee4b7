"""Checkpoint loading: every accepted layout comes back as the same clean torchvision state_dict,
the architecture is sniffed or checked, and bad files fail with one clear error."""
import argparse
import os

import pytest
import torch

from rdet.backbones import ALLOW_PICKLE_FLAG, create_classifier, get_spec, load_checkpoint, sniff_arch
from rdet.backbones.robustness_format import robustness_state_dict, save_robustness_checkpoint
from rdet.core.errors import CheckpointError


def _random_sd(arch, num_classes=1000):
    net = get_spec(arch).builder(num_classes)
    for m in net.modules():  # non-trivial BN statistics, so a dropped buffer would show
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
    return net.state_dict()


def _assert_same(a, b):
    assert set(a) == set(b)
    for k in a:
        assert torch.equal(a[k], b[k]), k


@pytest.mark.parametrize("arch", ["resnet18", "mobilenet_v2"])  # ResNet and a nested non-ResNet
def test_robustness_layout(tmp_path, arch):
    sd = _random_sd(arch)
    raw = robustness_state_dict(sd, arch)
    prefix = "module.model." + ("model." if arch == "mobilenet_v2" else "")
    assert any(k.startswith(prefix) for k in raw) and any(k.startswith("module.attacker.model.") for k in raw)
    path = tmp_path / "m.ckpt"
    save_robustness_checkpoint(sd, arch, path, epoch=89)
    loaded = load_checkpoint(path)
    assert loaded.arch == arch
    assert loaded.meta["format"] == "robustness" and loaded.meta["epoch"] == 89
    assert loaded.meta["mean"] == pytest.approx([0.485, 0.456, 0.406])
    _assert_same(loaded.state_dict, sd)


@pytest.mark.parametrize("layout", ["state_dict", "dataparallel", "plain", "rdet"])
def test_other_layouts(tmp_path, layout):
    sd = _random_sd("resnet18")
    obj = {
        "state_dict": {"state_dict": {f"module.{k}": v for k, v in sd.items()}},
        "dataparallel": {f"module.{k}": v for k, v in sd.items()},
        "plain": sd,
        "rdet": {"model": sd, "rdet": {"arch": "resnet18", "norm": "linf", "eps": 4 / 255}, "epoch": 3},
    }[layout]
    torch.save(obj, tmp_path / "w.pth")
    loaded = load_checkpoint(tmp_path / "w.pth")
    assert loaded.arch == "resnet18"
    _assert_same(loaded.state_dict, sd)
    if layout == "rdet":
        assert loaded.meta["norm"] == "linf" and loaded.meta["eps"] == pytest.approx(4 / 255)


def test_release_file_names_give_norm_and_eps(tmp_path):
    sd = _random_sd("resnet18")
    for name, norm, eps in [("resnet18_l2_eps3.ckpt", "l2", 3.0), ("resnet18_linf_eps8.0.ckpt", "linf", 8 / 255)]:
        save_robustness_checkpoint(sd, "resnet18", tmp_path / name)
        meta = load_checkpoint(tmp_path / name).meta
        assert (meta["norm"], meta["eps"]) == (norm, pytest.approx(eps))


def test_missing_num_batches_tracked_is_filled(tmp_path):
    sd = {k: v for k, v in _random_sd("resnet18").items() if not k.endswith("num_batches_tracked")}
    torch.save(sd, tmp_path / "old.pth")
    model = create_classifier("resnet18", weights=str(tmp_path / "old.pth"))
    torch.testing.assert_close(model.body.bn1.running_mean, sd["bn1.running_mean"])


def test_sniff_distinguishes_resnet_widths():
    for arch in ["resnet50", "wide_resnet50_2", "resnext50_32x4d"]:
        with torch.device("meta"):
            sd = get_spec(arch).builder(10).state_dict()
        assert sniff_arch(sd) == arch


def test_arch_mismatch_is_refused(tmp_path):
    torch.save(_random_sd("resnet18"), tmp_path / "r18.pth")
    with pytest.raises(CheckpointError, match=r"resnet18 checkpoint, not resnet34"):
        load_checkpoint(tmp_path / "r18.pth", arch="resnet34")


def test_unknown_weights_are_refused(tmp_path):
    torch.save({"conv.weight": torch.zeros(3, 3)}, tmp_path / "x.pth")
    with pytest.raises(CheckpointError, match="match no registered architecture"):
        load_checkpoint(tmp_path / "x.pth")


@pytest.mark.parametrize("kind", ["missing", "garbage", "truncated", "text", "empty_dict"])
def test_bad_files(tmp_path, kind):
    path = tmp_path / "bad.pth"
    if kind == "garbage":
        path.write_bytes(os.urandom(4096))
    elif kind == "truncated":
        torch.save(_random_sd("resnet18"), path)
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif kind == "text":
        path.write_text("not a checkpoint\n")
    elif kind == "empty_dict":
        torch.save({}, path)
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(path)
    assert str(path) in str(e.value) and "\n" not in str(e.value)


def test_pickle_needs_opt_in(tmp_path):
    path = tmp_path / "pickled.pth"
    torch.save({"model": _random_sd("resnet18"), "args": argparse.Namespace(lr=0.1)}, path)
    with pytest.raises(CheckpointError, match=ALLOW_PICKLE_FLAG):
        load_checkpoint(path)
    assert load_checkpoint(path, allow_pickle=True).arch == "resnet18"


def test_transfer_keeps_fresh_head_when_classes_differ(tmp_path):
    sd = _random_sd("resnet18", num_classes=1000)
    save_robustness_checkpoint(sd, "resnet18", tmp_path / "m.ckpt")
    same = create_classifier("resnet18", 1000, weights=str(tmp_path / "m.ckpt"))
    assert torch.equal(same.head.weight, sd["fc.weight"])
    other = create_classifier("resnet18", 10, weights=str(tmp_path / "m.ckpt"))
    assert other.head.weight.shape == (10, 512)
    assert torch.equal(other.body.layer4[1].conv2.weight, sd["layer4.1.conv2.weight"])
