"""What a release's weights expect of their input, checked against the releases' own conventions.

Each file is written here in a release's real layout from its real key names, under a neutral
file name (``robust_model.pt``) and under its catalog name:

* RobustBench's hosted ConvNeXt-T-ConvStem (Singh et al.): the bare timm state dict, no normaliser;
  RobustBench builds it without one (raw [0, 1] input). The reference model is written here from
  RobustBench's ``convstem_models.py`` description (timm's convnext_tiny, its stem replaced by two
  stride-2 3x3 convs each followed by a channels-first LayerNorm and GELU), not from rdet's code.
* Singh et al.'s own ``full_model_*.pth``: ``model_state_dict`` (DDP over their attack wrapper:
  ``module.base_model.*``) beside ``state_dict_ema``.
"""
import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image

from rdet.backbones import create_classifier
from rdet.backbones.checkpoint import load_checkpoint
from rdet.backbones.preprocessing import preprocessing_for, weights_preprocessing
from rdet.backbones.catalog import get_entry
from rdet.core.errors import CheckpointError
from rdet.data.transforms import test_transform as make_test_transform

SINGH = "Singh2023Revisiting_ConvNeXt-T-ConvStem"


class _ChannelsFirstLN(nn.Module):
    """RobustBench's LayerNorm(data_format="channels_first"): normalise over C at every pixel."""

    def __init__(self, c, eps=1e-6):
        super().__init__()
        self.weight, self.bias, self.eps = nn.Parameter(torch.ones(c)), nn.Parameter(torch.zeros(c)), eps

    def forward(self, x):
        u = x.mean(1, keepdim=True)
        s = (x - u).pow(2).mean(1, keepdim=True)
        return self.weight[:, None, None] * (x - u) / torch.sqrt(s + self.eps) + self.bias[:, None, None]


class _RefStem(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 48, 3, 2, 1), _ChannelsFirstLN(48), nn.GELU(),
                                  nn.Conv2d(48, 96, 3, 2, 1), _ChannelsFirstLN(96), nn.GELU())

    def forward(self, x):
        return self.stem(x)


@pytest.fixture(scope="module")
def convstem(tmp_path_factory):
    """(reference model as RobustBench builds it, its state dict): random weights, eval mode."""
    import timm

    torch.manual_seed(0)
    ref = timm.create_model("convnext_tiny", pretrained=False, num_classes=1000)
    ref.stem = _RefStem()
    with torch.no_grad():  # non-trivial LayerNorm affines, so a misplaced norm would show
        for m in ref.modules():
            if isinstance(m, (_ChannelsFirstLN, nn.LayerNorm)) and m.weight is not None:
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    return ref.eval(), {k: v.clone() for k, v in ref.state_dict().items()}


def _rel(a, b):
    return float((a - b).abs().max() / b.abs().max())


def test_convstem_file_without_normaliser_refused_under_a_neutral_name(tmp_path, convstem):
    _, sd = convstem
    neutral = tmp_path / "robust_model.pt"
    torch.save(sd, neutral)
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(neutral)
    msg = str(e.value)
    assert "\n" not in msg and "MODEL.INPUT_NORM" in msg and "raw" in msg and "imagenet" in msg and SINGH in msg
    # nor does create_classifier (transfer, evaluate) guess
    with pytest.raises(CheckpointError, match="MODEL.INPUT_NORM"):
        create_classifier("convnext_tiny_convstem", 1000, weights=str(neutral))


def test_convstem_catalog_name_or_key_gives_robustbench_logits(tmp_path, convstem):
    ref, sd = convstem
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want = ref(x)  # RobustBench's model: no normaliser, raw [0, 1] input
    named = tmp_path / f"{SINGH}.pt"
    torch.save(sd, named)
    neutral = tmp_path / "robust_model.pt"
    torch.save(sd, neutral)
    for weights, norm in ((named, ""), (neutral, "raw")):
        model = create_classifier("convnext_tiny_convstem", 1000, weights=str(weights), input_norm=norm).eval()
        with torch.no_grad():
            got = model(x)
        assert _rel(got, want) <= 1e-5, (weights.name, _rel(got, want))
        assert got.argmax(1).tolist() == want.argmax(1).tolist()
    meta = load_checkpoint(named).meta
    assert meta["mean"] == [0.0, 0.0, 0.0] and meta["std"] == [1.0, 1.0, 1.0]
    assert meta["input_norm"] == {"name": "raw", "source": f"catalog {SINGH}"}
    assert load_checkpoint(neutral, input_norm="raw").meta["input_norm"]["source"] == "MODEL.INPUT_NORM"
    # ImageNet's statistics on these weights: another model (the silent error this refuses)
    wrong = create_classifier("convnext_tiny_convstem", 1000, weights=str(neutral), input_norm="imagenet").eval()
    with torch.no_grad():
        assert _rel(wrong(x), want) > 1e-2


def test_conversion_writes_the_release_pixel_statistics(tmp_path, convstem):
    import yaml

    from rdet.convert import convert_to_detectron2

    _, sd = convstem
    torch.save(sd, tmp_path / "robust_model.pt")
    with pytest.raises(CheckpointError, match="MODEL.INPUT_NORM"):
        convert_to_detectron2(tmp_path / "robust_model.pt", tmp_path / "never.pkl", verify=False)
    assert not (tmp_path / "never.pkl").exists() and not (tmp_path / "never.yaml").exists()
    res = convert_to_detectron2(tmp_path / "robust_model.pt", tmp_path / "cvst.pkl", verify=False, input_norm="raw")
    model = yaml.safe_load((tmp_path / "cvst.yaml").read_text())["MODEL"]
    assert model["PIXEL_MEAN"] == [0.0, 0.0, 0.0] and model["PIXEL_STD"] == [255.0, 255.0, 255.0]
    assert res.meta["mean"] == [0.0, 0.0, 0.0]


def test_file_with_a_normaliser_contradicted_by_the_setting_is_refused(tmp_path, convstem):
    """RobustBench's model object layout (``normalize.*`` + ``model.*``) carries its statistics."""
    _, sd = convstem
    obj = {"normalize.mean": torch.zeros(1, 3, 1, 1), "normalize.std": torch.ones(1, 3, 1, 1),
           **{f"model.{k}": v for k, v in sd.items()}}
    torch.save(obj, tmp_path / "robust_model.pt")
    meta = load_checkpoint(tmp_path / "robust_model.pt").meta
    assert meta["input_norm"] == {"name": "raw", "source": "file"}
    with pytest.raises(CheckpointError, match="file's own normaliser is raw, but MODEL.INPUT_NORM is imagenet"):
        load_checkpoint(tmp_path / "robust_model.pt", input_norm="imagenet")


def test_plain_and_ema_weights_are_chosen_explicitly(tmp_path, convstem):
    _, sd = convstem
    ema = {k: (v + 0.01 if v.is_floating_point() else v) for k, v in sd.items()}
    full = {"model_state_dict": {f"module.base_model.{k}": v for k, v in sd.items()},
            "optimizer_state_dict": {}, "epoch": 299, "state_dict_ema": {f"base_model.{k}": v for k, v in ema.items()}}
    path = tmp_path / "full_model_299.pth"
    torch.save(full, path)
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(path, input_norm="raw")
    assert "model_state_dict" in str(e.value) and "state_dict_ema" in str(e.value) and "MODEL.WEIGHTS_VARIANT" in str(e.value)
    for variant, want in (("plain", sd), ("ema", ema)):
        loaded = load_checkpoint(path, input_norm="raw", variant=variant)
        assert loaded.meta["weights_variant"] == variant and loaded.meta["format"] == "singh2023"
        assert torch.equal(loaded.state_dict["head.fc.weight"], want["head.fc.weight"])
    torch.save(sd, tmp_path / "plain.pth")
    with pytest.raises(CheckpointError, match="holds no EMA weights"):
        load_checkpoint(tmp_path / "plain.pth", input_norm="raw", variant="ema")


def test_each_catalog_release_is_preprocessed_as_robustbench_does():
    """RobustBench's ``data.py``: Res256Crop224 (bilinear), BicubicRes256Crop224, Res224 (squash)."""
    singh = preprocessing_for(224, "convnext_tiny_convstem", get_entry(SINGH))
    assert (singh.resize, singh.crop, singh.interpolation, singh.overrides) == (256, 224, "bicubic", ())
    mo = preprocessing_for(224, "swin_base", get_entry("Mo2022When_Swin-B"))
    assert (mo.resize, mo.crop, mo.interpolation) == (224, None, "bilinear")
    paper = preprocessing_for(224, "resnet50", get_entry("resnet50_l2_eps3"))
    assert (paper.resize, paper.crop, paper.interpolation) == (256, 224, "bilinear")
    # a file that is not a release: the arch's own (timm's families bicubic)
    assert weights_preprocessing("swin_tiny")[:3] == ("bicubic", 224 / 256, False)
    over = preprocessing_for(224, "convnext_tiny_convstem", get_entry(SINGH), interpolation="bilinear", resize=232)
    assert over.overrides == ("DATA.TEST_RESIZE 232", "DATA.TEST_INTERPOLATION bilinear")


def test_squash_resizes_without_cropping():
    img = Image.fromarray((torch.rand(200, 300, 3) * 255).byte().numpy())
    out = make_test_transform(224, 224, squash=True)(img)
    want = torch.from_numpy(__import__("numpy").asarray(img.resize((224, 224), Image.BILINEAR))).permute(2, 0, 1) / 255
    assert out.shape == (3, 224, 224) and float((out - want).abs().max()) < 1.5 / 255
    cropped = make_test_transform(224, 256)(img)  # Resize(256) + CenterCrop: the sides are cut
    assert cropped.shape == (3, 224, 224) and not math.isclose(float((cropped - want).abs().max()), 0.0, abs_tol=0.05)
