"""scikit-learn's bundled handwritten digits: 1797 8x8 greyscale images, 10 classes, shipped inside
the scikit-learn package (a copy of the UCI test set of "Optical Recognition of Handwritten
Digits").

The fixed train/test split is staged once per dataset root as ``ROOT/digits/split-*.npz``:
importing scikit-learn costs a second or more, and every process that reads the set would pay it
again (each torchrun rank, each Slurm job, each cell of a study). The staged file is plain numpy
arrays (read with ``allow_pickle=False``) and carries the scikit-learn version that made it; it is
used only under that same version and remade otherwise."""
from __future__ import annotations

import logging
import os
from importlib import metadata
from pathlib import Path
from typing import Callable, Dict, Optional, Tuple

import numpy as np

from rdet.core.atomic import atomic_path
from rdet.data.paths import data_root

logger = logging.getLogger(__name__)

N_IMAGES = 1797
_ARRAYS = ("train_images", "train_labels", "test_images", "test_labels")


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


def _sklearn_version() -> Optional[str]:
    try:
        return metadata.version("scikit-learn")
    except metadata.PackageNotFoundError:
        return None


def _split(test_fraction: float, seed: int) -> Dict[str, np.ndarray]:
    from sklearn.model_selection import train_test_split

    images, labels = digits()
    idx_train, idx_test = train_test_split(np.arange(len(labels)), test_size=test_fraction,
                                           random_state=seed, stratify=labels)
    return {"train_images": images[idx_train], "train_labels": labels[idx_train],
            "test_images": images[idx_test], "test_labels": labels[idx_test]}


def _read_staged(path: Path, version: Optional[str]) -> Optional[Dict[str, np.ndarray]]:
    """The staged arrays, or None when absent, unreadable, made by another scikit-learn or not
    the digits' shapes and types."""
    if version is None or not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as f:
            if str(f["sklearn_version"]) != version:
                return None
            arrays = {k: f[k] for k in _ARRAYS}
    except (OSError, ValueError, KeyError) as e:
        logger.warning("remaking the staged digits split %s: %s", path, e)
        return None
    images, labels = (np.concatenate([arrays[f"{s}_{k}"] for s in ("train", "test")]) for k in ("images", "labels"))
    if images.shape != (N_IMAGES, 8, 8) or images.dtype != np.uint8 or labels.shape != (N_IMAGES,) \
            or labels.dtype != np.int64:
        logger.warning("remaking the staged digits split %s: not the digits' shapes", path)
        return None
    return arrays


def digits_split(test_fraction: float = 0.25, seed: int = 0,
                 root: Optional[str | os.PathLike] = None) -> Dict[str, np.ndarray]:
    """The fixed, stratified train/test split of :func:`digits` as four arrays
    (``train_images``, ``train_labels``, ``test_images``, ``test_labels``), read from the dataset
    root when staged there by the same scikit-learn, else made and staged (a root that cannot be
    written only loses the speed-up)."""
    path = data_root(root) / "digits" / f"split-{test_fraction:g}-{seed}.npz"
    version = _sklearn_version()
    arrays = _read_staged(path, version)
    if arrays is not None:
        return arrays
    arrays = _split(test_fraction, seed)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.savez(f, sklearn_version=np.array(version or ""), **arrays)
    except OSError as e:
        logger.debug("digits split not staged in %s: %s", path.parent, e)
    return arrays


def digits_dataset(train: bool, transform: Optional[Callable] = None, test_fraction: float = 0.25,
                   seed: int = 0, root: Optional[str | os.PathLike] = None) -> _ArrayImages:
    """A fixed, stratified train/test split of :func:`digits` (same split for every run)."""
    arrays = digits_split(test_fraction, seed, root)
    part = "train" if train else "test"
    return _ArrayImages(arrays[f"{part}_images"], arrays[f"{part}_labels"], transform)
