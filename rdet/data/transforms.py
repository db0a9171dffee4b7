"""The paper's transforms (appendix A.2), producing RGB tensors in [0, 1] (normalisation is inside
the model). ``downscale`` > 0 first resizes to that size (appendix A.3's 32x32 unified scale)."""
from __future__ import annotations

from torchvision import transforms as T


def _rgb(img):
    return img.convert("RGB")  # greyscale datasets (Fashion-MNIST, digits, some Caltech images)


def train_transform(size: int = 224, downscale: int = 0, scale_min: float = 0.08) -> T.Compose:
    pre = [T.Resize(downscale)] if downscale else []
    return T.Compose([T.Lambda(_rgb), *pre, T.RandomResizedCrop(size, scale=(scale_min, 1.0)), T.RandomHorizontalFlip(), T.ToTensor()])


def test_transform(size: int = 224, resize: int = 256, downscale: int = 0) -> T.Compose:
    pre = [T.Resize(downscale)] if downscale else []
    return T.Compose([T.Lambda(_rgb), *pre, T.Resize(resize), T.CenterCrop(size), T.ToTensor()])


def transforms_from_cfg(cfg):
    d = cfg.DATA
    test = test_transform(d.TRAIN_SIZE, d.TEST_RESIZE, d.DOWNSCALE)
    return (train_transform(d.TRAIN_SIZE, d.DOWNSCALE, d.CROP_SCALE_MIN) if d.AUGMENT else test), test
