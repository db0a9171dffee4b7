"""Image transforms, producing RGB tensors in [0, 1] (normalisation is inside the model).

Two training augmentation policies, chosen by ``DATA.AUGMENT_POLICY``:

* ``paper_transfer``: the paper's appendix A.2 (RandomResizedCrop + horizontal flip), used for
  transfer and for pretraining on anything but ImageNet;
* ``robustness_imagenet``: what the robustness library (``data_augmentation.py``,
  ``TRAIN_TRANSFORMS_IMAGENET``) trains the paper's ImageNet models with: RandomResizedCrop,
  horizontal flip, ColorJitter(0.1, 0.1, 0.1), then AlexNet-style PCA :class:`Lighting` (0.05)
  on the tensor;
* ``auto`` (the pretraining default) resolves to ``robustness_imagenet`` when ``DATA.DATASET`` is
  ``imagenet`` and to ``paper_transfer`` otherwise.

``DATA.DOWNSCALE`` > 0 first resizes to that size (appendix A.3's 32x32 unified scale).
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Dict, List, Sequence

import torch
from torchvision import transforms as T

from rdet.core.errors import ConfigError

# Principal components of ImageNet's RGB pixel values (pixels in [0, 1]), as published with
# AlexNet and used by fb.resnet.torch and the robustness library. Column j of IMAGENET_EIGVEC is
# the eigenvector of IMAGENET_EIGVAL[j]; rows are R, G, B.
IMAGENET_EIGVAL = (0.2175, 0.0188, 0.0045)
IMAGENET_EIGVEC = ((-0.5675, 0.7192, 0.4009),
                   (-0.5808, -0.0045, -0.8140),
                   (-0.5836, -0.6948, 0.4203))


class Lighting:
    """AlexNet-style PCA lighting noise on a ``(3, H, W)`` RGB tensor with values in [0, 1].

    Each call draws ``alpha ~ N(0, alphastd^2)`` (3 values, from torch's global generator, so
    DataLoader workers' seeds apply) and adds ``eigvec @ (alpha * eigval)`` to the R, G, B
    channels: a random shift along the principal colour axes, the same for every pixel. No
    clamping (the robustness library does none). ``alphastd`` 0 returns the input unchanged.
    """

    def __init__(self, alphastd: float, eigval: Sequence[float] = IMAGENET_EIGVAL,
                 eigvec: Sequence[Sequence[float]] = IMAGENET_EIGVEC):
        self.alphastd = float(alphastd)
        self.eigval = torch.tensor(eigval, dtype=torch.float32)
        self.eigvec = torch.tensor(eigvec, dtype=torch.float32)

    def shift(self, alpha: torch.Tensor) -> torch.Tensor:
        """The per-channel offset ``(3,)`` for coefficients ``alpha`` ``(3,)``."""
        return self.eigvec @ (alpha * self.eigval)

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        if self.alphastd == 0:
            return img
        alpha = torch.randn(3) * self.alphastd
        return img + self.shift(alpha).to(img.dtype).view(3, 1, 1)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(alphastd={self.alphastd})"


def _rgb(img):
    return img.convert("RGB")  # greyscale datasets (Fashion-MNIST, digits, some Caltech images)


def _paper_transfer(size: int, scale_min: float) -> List[Callable]:
    return [T.RandomResizedCrop(size, scale=(scale_min, 1.0)), T.RandomHorizontalFlip(), T.ToTensor()]


def _robustness_imagenet(size: int, scale_min: float) -> List[Callable]:
    return [T.RandomResizedCrop(size, scale=(scale_min, 1.0)), T.RandomHorizontalFlip(),
            T.ColorJitter(brightness=0.1, contrast=0.1, saturation=0.1), T.ToTensor(), Lighting(0.05)]


# name -> builder(size, scale_min) of the augmentation steps after the RGB conversion/downscale
AUGMENT_POLICIES: Dict[str, Callable[[int, float], List[Callable]]] = {
    "paper_transfer": _paper_transfer,
    "robustness_imagenet": _robustness_imagenet,
}


def resolve_policy(policy: str, dataset: str) -> str:
    """The concrete policy name: ``auto`` is ``robustness_imagenet`` for ImageNet, else
    ``paper_transfer``; an unknown name is a :class:`ConfigError`."""
    if policy == "auto":
        return "robustness_imagenet" if dataset == "imagenet" else "paper_transfer"
    if policy not in AUGMENT_POLICIES:
        raise ConfigError(f"DATA.AUGMENT_POLICY {policy!r} is not one of: auto, {', '.join(AUGMENT_POLICIES)}")
    return policy


def train_transform(size: int = 224, downscale: int = 0, scale_min: float = 0.08,
                    policy: str = "paper_transfer") -> T.Compose:
    """``policy``: a name in :data:`AUGMENT_POLICIES` (resolve ``auto`` with :func:`resolve_policy`)."""
    if policy not in AUGMENT_POLICIES:
        raise ConfigError(f"augmentation policy {policy!r} is not one of: {', '.join(AUGMENT_POLICIES)}")
    pre = [T.Resize(downscale)] if downscale else []
    return T.Compose([T.Lambda(_rgb), *pre, *AUGMENT_POLICIES[policy](size, scale_min)])


def test_transform(size: int = 224, resize: int = 256, downscale: int = 0,
                   interpolation: str = "bilinear", squash: bool = False) -> T.Compose:
    """Resize(resize) with ``interpolation`` (bilinear: torchvision's default; bicubic: what the timm
    families' releases are evaluated with, RobustBench's BicubicRes256Crop224), CenterCrop(size);
    ``squash``: Resize((resize, resize)) and no crop (RobustBench's Res224)."""
    pre = [T.Resize(downscale)] if downscale else []
    mode = T.InterpolationMode(interpolation)
    if squash:
        return T.Compose([T.Lambda(_rgb), *pre, T.Resize((resize, resize), interpolation=mode), T.ToTensor()])
    return T.Compose([T.Lambda(_rgb), *pre, T.Resize(resize, interpolation=mode), T.CenterCrop(size), T.ToTensor()])


def preprocessing_from_cfg(cfg):
    """The :class:`rdet.backbones.preprocessing.Preprocessing` of the test images: the one
    ``MODEL.WEIGHTS`` was evaluated with (its catalog release's, else ``MODEL.ARCH``'s), with any
    ``DATA.TEST_*`` that is set applied and named as an override."""
    from rdet.backbones.catalog import get_entry
    from rdet.backbones.preprocessing import preprocessing_for

    arch, weights, d = cfg.MODEL.ARCH, str(cfg.MODEL.WEIGHTS or ""), cfg.DATA
    entry = (get_entry(weights) or get_entry(Path(weights).stem)) if weights else None
    if entry is not None and entry.arch != arch:
        entry = None
    return preprocessing_for(d.TRAIN_SIZE, arch, entry, d.TEST_RESIZE, d.TEST_INTERPOLATION, d.TEST_CROP)


def transforms_from_cfg(cfg):
    """``(train_transform, test_transform)``; training uses the test transform when
    ``DATA.AUGMENT`` is False (deterministic inputs)."""
    d = cfg.DATA
    prep = preprocessing_from_cfg(cfg)
    test = test_transform(d.TRAIN_SIZE, prep.resize, d.DOWNSCALE, prep.interpolation, squash=prep.crop is None)
    if not d.AUGMENT:
        return test, test
    policy = resolve_policy(d.AUGMENT_POLICY, d.DATASET)
    return train_transform(d.TRAIN_SIZE, d.DOWNSCALE, d.CROP_SCALE_MIN, policy), test
