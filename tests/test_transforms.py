"""rdet.data.transforms: the robustness library's ImageNet augmentation (PCA lighting included),
the paper's A.2 transfer augmentation, and which one a config selects."""
import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms as T

from rdet.config import get_pretrain_cfg, get_transfer_cfg
from rdet.data.transforms import Lighting, resolve_policy, train_transform, transforms_from_cfg
from rdet.core.errors import ConfigError

EIGVAL = [0.2175, 0.0188, 0.0045]
EIGVEC = [[-0.5675, 0.7192, 0.4009], [-0.5808, -0.0045, -0.8140], [-0.5836, -0.6948, 0.4203]]


def test_lighting_with_zero_std_is_identity():
    img = torch.rand(3, 5, 4)
    assert torch.equal(Lighting(0.0)(img), img)


def test_lighting_adds_the_pca_shift_of_its_alpha():
    img = torch.rand(3, 5, 4)
    torch.manual_seed(7)
    alpha = (torch.randn(3) * 0.05).double().numpy()  # the draw Lighting makes after the same seed
    torch.manual_seed(7)
    out = Lighting(0.05)(img)
    # by hand: channel i moves by sum_j eigvec[i][j] * alpha[j] * eigval[j], the same at every pixel
    shift = [sum(EIGVEC[i][j] * alpha[j] * EIGVAL[j] for j in range(3)) for i in range(3)]
    assert np.abs(alpha).max() > 0.01  # a real shift, not ~0
    np.testing.assert_allclose((out - img).numpy(), np.broadcast_to(np.array(shift)[:, None, None], (3, 5, 4)),
                               atol=1e-6)
    torch.manual_seed(8)
    assert not torch.allclose(Lighting(0.05)(img), out)  # a fresh alpha per call


def _steps(tf):
    return [type(t).__name__ for t in tf.transforms]


def test_policies_build_the_documented_steps():
    paper = train_transform(16, policy="paper_transfer")
    assert _steps(paper) == ["Lambda", "RandomResizedCrop", "RandomHorizontalFlip", "ToTensor"]
    lib = train_transform(16, scale_min=0.3, policy="robustness_imagenet")
    assert _steps(lib) == ["Lambda", "RandomResizedCrop", "RandomHorizontalFlip", "ColorJitter", "ToTensor",
                           "Lighting"]
    crop, jitter, light = lib.transforms[1], lib.transforms[3], lib.transforms[5]
    assert crop.size == (16, 16) and crop.scale == (0.3, 1.0)
    assert (jitter.brightness, jitter.contrast, jitter.saturation, jitter.hue) == ((0.9, 1.1), (0.9, 1.1),
                                                                                   (0.9, 1.1), None)
    assert light.alphastd == 0.05
    assert light.eigval.tolist() == pytest.approx(EIGVAL) and light.eigvec.flatten().tolist() == pytest.approx(
        sum(EIGVEC, []))
    x = lib(Image.fromarray(np.full((20, 24), 128, np.uint8), mode="L"))  # greyscale in, RGB tensor out
    assert x.shape == (3, 16, 16) and x.dtype == torch.float32


def test_config_picks_the_policy():
    def train_steps(cfg, *overrides):
        return _steps(transforms_from_cfg(_with(cfg, *overrides))[0])

    assert train_steps(get_pretrain_cfg(), "DATA.DATASET", "imagenet")[-1] == "Lighting"
    assert train_steps(get_pretrain_cfg(), "DATA.DATASET", "digits")[-1] == "ToTensor"
    assert train_steps(get_transfer_cfg(), "DATA.DATASET", "imagenet")[-1] == "ToTensor"  # transfer keeps A.2
    assert train_steps(get_transfer_cfg(), "DATA.AUGMENT_POLICY", "robustness_imagenet")[-1] == "Lighting"
    no_aug = transforms_from_cfg(_with(get_pretrain_cfg(), "DATA.DATASET", "imagenet", "DATA.AUGMENT", "False"))
    assert no_aug[0] is no_aug[1] and isinstance(no_aug[1].transforms[-1], T.ToTensor)
    assert resolve_policy("auto", "imagenet") == "robustness_imagenet"
    with pytest.raises(ConfigError, match="DATA.AUGMENT_POLICY 'alexnet'"):
        transforms_from_cfg(_with(get_transfer_cfg(), "DATA.AUGMENT_POLICY", "alexnet"))


def _with(cfg, *overrides):
    cfg.merge_from_list(list(overrides))
    return cfg
