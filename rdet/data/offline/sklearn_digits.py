"""scikit-learn's bundled handwritten digits: 1797 8x8 greyscale images, 10 classes, shipped inside
the scikit-learn package (a copy of the UCI test set of "Optical Recognition of Handwritten
Digits")."""
from __future__ import annotations

from typing import Callable, Optional, Tuple

import numpy as np


def digits() -> Tuple[np.ndarray, np.ndarray]:
    """``(images uint8 (1797, 8, 8) in 0-255, labels int64 (1797,))``."""
    from sklearn.datasets import load_digits

    d = load_digits()
    images = np.clip(d.images * (255.0 / 16.0), 0, 255).round().astype(np.uint8)  # values are 0..16
    return images, d.target.astype(np.int64)


class _ArrayImages:
    """A map-style dataset of greyscale uint8 arrays as PIL images (like torchvision's MNIST)."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, transform: Optional[Callable] = None):
        self.images, self.targets, self.transform = images, labels, transform
        self.classes = [str(c) for c in range(int(labels.max()) + 1)]

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int):
        from PIL import Image

        img = Image.fromarray(self.images[i], mode="L")
        return (self.transform(img) if self.transform else img), int(self.targets[i])


def digits_dataset(train: bool, transform: Optional[Callable] = None, test_fraction: float = 0.25,
                   seed: int = 0) -> _ArrayImages:
    """A fixed, stratified train/test split of :func:`digits` (same split for every run)."""
    from sklearn.model_selection import train_test_split

    images, labels = digits()
    idx_train, idx_test = train_test_split(np.arange(len(labels)), test_size=test_fraction,
                                           random_state=seed, stratify=labels)
    idx = idx_train if train else idx_test
    return _ArrayImages(images[idx], labels[idx], transform)
