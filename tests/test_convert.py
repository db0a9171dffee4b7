"""The Detectron2 converter: exact feature equivalence with torchvision, loading into FPN and C4
models with every backbone tensor filled, and clean failures on bad input."""
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from rdet.backbones import get_spec
from rdet.backbones.robustness_format import save_robustness_checkpoint
from rdet.convert import compare_features, convert_to_detectron2, read_converted_meta


def _random_resnet_sd(arch, seed=0):
    torch.manual_seed(seed)
    net = get_spec(arch).builder(1000)
    for m in net.modules():  # BN must not be an identity, or a swapped buffer would go unnoticed
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.5, 0.5)
    return net.state_dict()


@pytest.fixture(scope="module")
def r50(tmp_path_factory):
    d = tmp_path_factory.mktemp("r50")
    sd = _random_resnet_sd("resnet50")
    save_robustness_checkpoint(sd, "resnet50", d / "resnet50_l2_eps3.ckpt")
    res = convert_to_detectron2(d / "resnet50_l2_eps3.ckpt", d / "r50.pkl")
    return sd, res


def _independent_d2_features_error(tv_sd, arch, pkl, yaml_path):
    """Build detectron2's ResNet directly and copy the .pkl arrays in by name (no checkpointer)."""
    from detectron2.config import get_cfg
    from detectron2.layers import ShapeSpec
    from detectron2.modeling.backbone.resnet import build_resnet_backbone

    cfg = get_cfg()
    cfg.merge_from_file(str(yaml_path))
    cfg.MODEL.RESNETS.OUT_FEATURES = ["res2", "res3", "res4", "res5"]
    resnet = build_resnet_backbone(cfg, ShapeSpec(channels=3)).eval()
    with open(pkl, "rb") as f:
        arrays = pickle.load(f)["model"]
    own = resnet.state_dict()
    assert set(arrays) == set(own), set(arrays) ^ set(own)
    resnet.load_state_dict({k: torch.from_numpy(v) for k, v in arrays.items()}, strict=True)
    return compare_features(tv_sd, arch, cfg, resnet, size=64, seed=1)


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["resnet18", "resnet50", "wide_resnet50_2"])
def test_equivalence_from_robustness_layout(tmp_path, arch, r50):
    if arch == "resnet50":
        sd, res = r50
    else:
        sd = _random_resnet_sd(arch)
        save_robustness_checkpoint(sd, arch, tmp_path / f"{arch}_linf_eps4.0.ckpt")
        res = convert_to_detectron2(tmp_path / f"{arch}_linf_eps4.0.ckpt", tmp_path / "out.pkl")
    assert res.max_rel_error < 1e-4
    assert _independent_d2_features_error(sd, arch, res.weights, res.config) < 1e-4
    meta = read_converted_meta(res.weights)
    assert meta["arch"] == arch and meta["norm"] in ("l2", "linf")
    with open(res.weights, "rb") as f:
        data = pickle.load(f)
    assert data["matching_heuristics"] is True and data["__author__"] == "rdet"
    assert not any(k.startswith(("fc.", "normalizer", "attacker")) or "num_batches" in k for k in data["model"])


def test_rdet_checkpoint_with_small_head(tmp_path):
    sd = _random_resnet_sd("resnet18")
    sd["fc.weight"], sd["fc.bias"] = torch.randn(5, 512), torch.randn(5)
    torch.save({"model": sd, "rdet": {"arch": "resnet18", "norm": "l2", "eps": 0.5}}, tmp_path / "m.pth")
    res = convert_to_detectron2(tmp_path / "m.pth", tmp_path / "m.pkl")
    assert res.max_rel_error < 1e-4 and res.meta["eps"] == 0.5


def test_emitted_config_is_torchvision_geometry(r50):
    import yaml

    cfg = yaml.safe_load(r50[1].config.read_text())
    assert cfg["INPUT"]["FORMAT"] == "RGB"
    assert cfg["MODEL"]["PIXEL_MEAN"] == pytest.approx([123.675, 116.28, 103.53])
    assert cfg["MODEL"]["PIXEL_STD"] == pytest.approx([58.395, 57.12, 57.375])
    assert cfg["MODEL"]["RESNETS"]["STRIDE_IN_1X1"] is False and cfg["MODEL"]["RESNETS"]["DEPTH"] == 50
    assert Path(cfg["MODEL"]["WEIGHTS"]) == r50[1].weights


@pytest.mark.parametrize("zoo_config,prefixes", [
    ("COCO-Detection/faster_rcnn_R_50_FPN_1x.yaml", ("backbone.bottom_up.",)),
    ("COCO-Detection/faster_rcnn_R_50_C4_1x.yaml", ("backbone.", "roi_heads.res5.")),
])
def test_loads_into_fpn_and_c4_with_every_backbone_tensor(r50, zoo_config, prefixes):
    from detectron2 import model_zoo
    from detectron2.checkpoint import DetectionCheckpointer
    from detectron2.config import get_cfg
    from detectron2.modeling import build_model

    _, res = r50
    cfg = get_cfg()
    cfg.merge_from_file(model_zoo.get_config_file(zoo_config))
    cfg.merge_from_file(str(res.config))
    cfg.MODEL.DEVICE = "cpu"
    model = build_model(cfg)
    DetectionCheckpointer(model).load(cfg.MODEL.WEIGHTS)
    with open(res.weights, "rb") as f:
        arrays = pickle.load(f)["model"]
    backbone = {k: v for k, v in model.state_dict().items()
                if k.startswith(prefixes) and not k.startswith("backbone.fpn") and "backbone.top_block" not in k}
    assert len(backbone) == len(arrays)  # every converted tensor has exactly one home
    for name, tensor in backbone.items():
        suffix = name.split("bottom_up.")[-1] if "bottom_up." in name else name.split(".", 1)[1]
        np.testing.assert_array_equal(tensor.numpy(), arrays[suffix], err_msg=name)


def test_pth_output(tmp_path, r50):
    sd, _ = r50
    torch.save({"state_dict": {f"module.{k}": v for k, v in sd.items()}}, tmp_path / "plain.pth")
    res = convert_to_detectron2(tmp_path / "plain.pth", tmp_path / "r50.pth", arch="resnet50")
    assert res.max_rel_error < 1e-4
    data = torch.load(res.weights, weights_only=True)
    assert torch.equal(data["model"]["res5.2.conv3.weight"], sd["layer4.2.conv3.weight"])
    assert read_converted_meta(res.weights)["arch"] == "resnet50"


def _bad_input(tmp_path, kind, r50):
    good = tmp_path / "good.ckpt"
    save_robustness_checkpoint(_random_resnet_sd("resnet18"), "resnet18", good)
    out = tmp_path / "out.pkl"
    if kind == "missing":
        return [tmp_path / "nope.ckpt", out]
    if kind == "garbage":
        (tmp_path / "g.ckpt").write_bytes(np.random.default_rng(0).bytes(5000))
        return [tmp_path / "g.ckpt", out]
    if kind == "truncated":
        data = good.read_bytes()
        (tmp_path / "t.ckpt").write_bytes(data[: len(data) // 3])
        return [tmp_path / "t.ckpt", out]
    if kind == "non_resnet":
        torch.save(get_spec("mobilenet_v2").builder(1000).state_dict(), tmp_path / "mb.pth")
        return [tmp_path / "mb.pth", out]
    if kind == "arch_mismatch":
        return [good, out, "--arch", "resnet50"]
    if kind == "no_out_dir":
        return [good, tmp_path / "missing_dir" / "out.pkl"]
    if kind == "bad_suffix":
        return [good, tmp_path / "out.txt"]
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["missing", "garbage", "truncated", "non_resnet", "arch_mismatch", "no_out_dir",
                                  "bad_suffix"])
def test_bad_inputs_fail_cleanly(tmp_path, kind, r50, capsys):
    from rdet.cli.convert import main

    args = _bad_input(tmp_path, kind, r50)
    before = set(tmp_path.rglob("*"))
    capsys.readouterr()
    assert main([str(a) for a in args]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    assert set(tmp_path.rglob("*")) == before  # no output, no temp file


@pytest.mark.slow
def test_cli_success_message(tmp_path, r50, capsys):
    """The command's main, in this process (tests/test_card.py runs tools/convert_backbone.py as
    the card writes it)."""
    from rdet.cli.convert import main

    sd, _ = r50
    save_robustness_checkpoint(sd, "resnet50", tmp_path / "resnet50_l2_eps1.ckpt")
    code = main([str(tmp_path / "resnet50_l2_eps1.ckpt"), str(tmp_path / "r50.pkl")])
    printed = capsys.readouterr()
    assert code == 0, printed.err
    assert "verified" in printed.out and (tmp_path / "r50.yaml").is_file()


class _WritesMarker:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return exec, (f"open({self.marker!r}, 'w').write('ran')",)


def test_read_converted_meta_never_runs_a_crafted_pickle(tmp_path, r50):
    from rdet.core.errors import CheckpointError

    marker = tmp_path / "marker"
    evil = tmp_path / "evil.pkl"
    with open(evil, "wb") as f:
        pickle.dump({"__author__": "rdet", "model": {}, "rdet": {"arch": _WritesMarker(marker)}}, f)
    with pytest.raises(CheckpointError) as e:
        read_converted_meta(evil)
    assert "refusing to unpickle builtins.exec" in str(e.value) and "--allow-pickle" in str(e.value)
    assert not marker.exists()
    read_converted_meta(evil, allow_pickle=True)  # the user's explicit opt-in: it runs
    assert marker.read_text() == "ran"
    assert read_converted_meta(r50[1].weights)["arch"] == "resnet50"  # a genuine converter file still loads


def test_console_script_main(tmp_path, capsys):
    from rdet.cli.convert import main

    save_robustness_checkpoint(_random_resnet_sd("resnet18"), "resnet18", tmp_path / "r18.ckpt")
    assert main([str(tmp_path / "r18.ckpt"), str(tmp_path / "r18.txt")]) == 2
    assert capsys.readouterr().err.strip().startswith("error: ") and not (tmp_path / "r18.txt").exists()
    assert main([str(tmp_path / "r18.ckpt"), str(tmp_path / "r18.pkl")]) == 0
    assert "verified" in capsys.readouterr().out and read_converted_meta(tmp_path / "r18.pkl")["arch"] == "resnet18"


def test_a_weight_missing_from_the_pkl_is_refused_by_the_check(tmp_path, r50):
    """detectron2's checkpointer only logs a key the file lacks; the conversion check builds its
    network without drawing the weights (rdet.backbones.skip_init), so a missing one is refused
    rather than compared as NaN or as memory garbage."""
    import shutil

    from rdet.convert import build_d2_backbone
    from rdet.core.errors import CheckpointError

    _, res = r50
    with open(res.weights, "rb") as f:
        blob = pickle.load(f)
    del blob["model"]["res3.0.conv1.weight"]
    pkl = tmp_path / "r50.pkl"
    with open(pkl, "wb") as f:
        pickle.dump(blob, f)
    config = tmp_path / "r50.yaml"
    shutil.copy(res.config, config)
    config.write_text(config.read_text().replace(str(res.weights), str(pkl)))
    assert str(pkl) in config.read_text()
    with pytest.raises(CheckpointError, match="parameter res3.0.conv1.weight was not loaded"):
        build_d2_backbone(config)
