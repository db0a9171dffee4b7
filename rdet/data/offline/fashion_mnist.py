"""Fashion-MNIST (Zalando; 60000 train / 10000 test 28x28 greyscale images, 10 classes) from
Debian's ``dataset-fashion-mnist`` package, read through ``torchvision.datasets.FashionMNIST``.

Debian re-gzipped the idx files, so their md5s differ from those torchvision checks on download;
they are decompressed into ``ROOT/FashionMNIST/raw/`` and torchvision reads them with
``download=False``.
"""
from __future__ import annotations

import gzip
import os
import shutil
from pathlib import Path
from typing import Callable, Optional

from rdet.core.atomic import atomic_path
from rdet.data.paths import data_root
from rdet.core.errors import DatasetError

DEBIAN_DIR = Path(os.environ.get("RDET_FASHION_MNIST_GZ", "/usr/share/datasets/fashion-mnist"))
_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
                         "Bag", "Ankle boot")
INSTALL_HINT = "install it with `apt-get install dataset-fashion-mnist` (Debian/Ubuntu, as root)"


def stage_fashion_mnist(root: Optional[str | os.PathLike] = None) -> Path:
    """Make ``ROOT/FashionMNIST/raw/`` hold the four decompressed idx files; return ``ROOT``.

    Idempotent. Raises :class:`DatasetError` naming the package when the files are nowhere.
    """
    root = data_root(root)
    raw = root / "FashionMNIST" / "raw"
    missing = [f for f in _FILES if not (raw / f).is_file()]
    if not missing:
        return root
    sources = {f: DEBIAN_DIR / f"{f}.gz" for f in missing}
    absent = [str(p) for p in sources.values() if not p.is_file()]
    if absent:
        raise DatasetError(f"Fashion-MNIST not found in {raw} nor in {DEBIAN_DIR}; {INSTALL_HINT}")
    raw.mkdir(parents=True, exist_ok=True)
    for name, src in sources.items():
        with gzip.open(src, "rb") as fin, atomic_path(raw / name) as tmp, open(tmp, "wb") as fout:
            shutil.copyfileobj(fin, fout)
    return root


def fashion_mnist(train: bool = True, root: Optional[str | os.PathLike] = None,
                  transform: Optional[Callable] = None, target_transform: Optional[Callable] = None):
    """``torchvision.datasets.FashionMNIST`` on the staged Debian copy (PIL 'L' images)."""
    from torchvision.datasets import FashionMNIST

    return FashionMNIST(str(stage_fashion_mnist(root)), train=train, download=False,
                        transform=transform, target_transform=target_transform)
