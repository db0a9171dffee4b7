"""A small semantic segmentation dataset composed from real pieces, in ADE20K's on-disk layout.

Objects are real Fashion-MNIST test items (Debian's ``dataset-fashion-mnist``), tinted, scaled
(~24-80 px) and pasted, with occlusion, onto crops of real photographs bundled with scikit-image
(as the composed detection set, :mod:`rdet.data.offline.detection`). Each pixel's label is the
item type covering it; the photo is a class of its own (background).

The folder is ADEChallengeData2016 as unpacked, so the ADE20K code path reads it unchanged:
``ADEChallengeData2016/images/{training,validation}/*.jpg`` and
``annotations/{training,validation}/*.png`` (8-bit greyscale), where, as in ADE20K, 0 is
"other" (not evaluated, not trained on) and classes are 1..N: 1 = background, 2.. = the item
types. Pixels at an item's faint rim (neither clearly item nor clearly photo) are 0, as ADE's
unlabelled pixels are. Class names, in label order 1..N: ``rdet_classes.txt`` (this set's
variant of ADE's ``objectInfo150.txt``). Deterministic for a seed; written to a temporary folder
that is renamed when complete.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Tuple

import numpy as np

from rdet.data.offline.composed import background_crop, pieces, written_whole
from rdet.data.offline.fashion_mnist import FASHION_MNIST_CLASSES
from rdet.data.paths import data_root

ITEM_CLASSES = (1, 5, 7, 8, 9)  # Trouser, Sandal, Sneaker, Bag, Ankle boot: visually distinct at 24 px
CLASS_NAMES: Tuple[str, ...] = ("background",) + tuple(
    FASHION_MNIST_CLASSES[c].lower().replace(" ", "_") for c in ITEM_CLASSES)
CLASSES_FILE = "rdet_classes.txt"
DATA_NOTE = ("rdet's composed semantic segmentation set: real Fashion-MNIST items (Trouser, Sandal, Sneaker, Bag, "
             "Ankle boot) pasted at 24-80 px onto crops of scikit-image's bundled photos; 6 classes (background + "
             "5 item types), item rims unlabelled; ADE20K layout")
_SPLITS = {"train": "training", "val": "validation"}
_VERSION = 1
_ITEM, _RIM = 0.12, 0.03  # item intensity thresholds (0-1): silhouette above _ITEM, rim between


def _compose(rng, backgrounds, items, labels, size) -> Tuple[np.ndarray, np.ndarray]:
    """One (H, W, 3) uint8 RGB image and its (H, W) uint8 ADE-style label map."""
    from PIL import Image

    img = background_crop(rng, backgrounds, size)
    label = np.ones((size, size), np.uint8)  # 1 = background
    for _ in range(int(rng.integers(1, 5))):
        k = int(rng.integers(len(items)))
        s = int(rng.integers(24, min(81, size + 1)))
        item = np.asarray(Image.fromarray(items[k]).resize((s, s), Image.BILINEAR), dtype=np.float32) / 255.0
        top, left = int(rng.integers(0, size - s + 1)), int(rng.integers(0, size - s + 1))
        sil, rim = item > _ITEM, (item > _RIM) & (item <= _ITEM)
        patch, lab = img[top:top + s, left:left + s], label[top:top + s, left:left + s]
        patch[sil] = ((0.35 + 0.65 * item)[..., None] * rng.uniform(0.4, 1.0, size=3) * 255.0)[sil]
        lab[sil] = 2 + ITEM_CLASSES.index(int(labels[k]))
        lab[rim] = 0
    return img.clip(0, 255).astype(np.uint8), label


def compose_segmentation_dataset(root: Optional[str | os.PathLike] = None, n_train: int = 200, n_val: int = 40,
                                 size: int = 128, seed: int = 0) -> Path:
    """Write (once) and return ``ROOT/rdet_fashion_sem_{size}_{n_train}_{n_val}_s{seed}/``, which
    holds ``ADEChallengeData2016/`` as described in the module docstring."""
    from PIL import Image

    root = data_root(root)
    out = root / f"rdet_fashion_sem_{size}_{n_train}_{n_val}_s{seed}"
    if (out / "ADEChallengeData2016" / CLASSES_FILE).is_file():
        return out
    items, labels, backgrounds, rng = pieces(root, ITEM_CLASSES, seed)
    with written_whole(out) as tmp:
        ade = tmp / "ADEChallengeData2016"
        for split, n in (("train", n_train), ("val", n_val)):
            d = _SPLITS[split]
            (ade / "images" / d).mkdir(parents=True)
            (ade / "annotations" / d).mkdir(parents=True)
            for i in range(n):
                img, lab = _compose(rng, backgrounds, items, labels, size)
                stem = f"rdet_{d}_{i:05d}"  # ADE's names: ADE_train_00000001
                Image.fromarray(img).save(ade / "images" / d / f"{stem}.jpg", quality=92)
                Image.fromarray(lab).save(ade / "annotations" / d / f"{stem}.png")
        (ade / CLASSES_FILE).write_text("\n".join(CLASS_NAMES) + "\n")
    return out
