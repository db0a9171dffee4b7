"""A small detection + instance-segmentation dataset composed from real pieces, in COCO format.

Objects are real Fashion-MNIST test items (Debian's ``dataset-fashion-mnist``): each item's
silhouette (pixels above a threshold) is its instance mask and its class is its category. They
are tinted, scaled (~20-70 px) and pasted, with occlusion, onto crops of real photographs bundled
with scikit-image. The result is written as JPEG images plus ``annotations/instances_{split}.json``
with RLE masks, so detectron2's own COCO loader, evaluator and pycocotools read it unchanged.
Deterministic for a given seed; written to a temporary folder that is renamed when complete.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Dict, Optional

import numpy as np

from rdet.data.offline.composed import background_crop, pieces, written_whole
from rdet.data.offline.fashion_mnist import FASHION_MNIST_CLASSES
from rdet.data.paths import data_root

# Visually distinct Fashion-MNIST classes used as object categories.
DETECTION_CLASSES = (1, 5, 7, 8, 9)  # Trouser, Sandal, Sneaker, Bag, Ankle boot
DATA_NOTE = ("rdet's composed detection set: real Fashion-MNIST items (Trouser, Sandal, Sneaker, Bag, Ankle boot; "
             "silhouettes as instance masks) pasted at 20-70 px onto crops of scikit-image's bundled photos, "
             "COCO format")
_VERSION = 1


def _compose_image(rng, backgrounds, items, labels, size):
    from PIL import Image
    from pycocotools import mask as mask_util

    img = background_crop(rng, backgrounds, size)
    masks, cats = [], []
    for _ in range(int(rng.integers(1, 5))):
        k = int(rng.integers(len(items)))
        s = int(rng.integers(20, 71))
        item = np.asarray(Image.fromarray(items[k]).resize((s, s), Image.BILINEAR), dtype=np.float32) / 255.0
        sil = item > 0.12
        if sil.sum() < 30:
            continue
        top, left = int(rng.integers(0, size - s + 1)), int(rng.integers(0, size - s + 1))
        full = np.zeros((size, size), bool)
        full[top:top + s, left:left + s] = sil
        tint = rng.uniform(0.4, 1.0, size=3) * 255.0
        patch = img[top:top + s, left:left + s]
        shade = (0.35 + 0.65 * item)[..., None] * tint
        patch[sil] = shade[sil]
        masks = [m & ~full for m in masks]  # the new item occludes earlier ones
        masks.append(full)
        cats.append(int(labels[k]))
    anns = []
    for m, c in zip(masks, cats):
        if m.sum() < 20:
            continue
        rle = mask_util.encode(np.asfortranarray(m.astype(np.uint8)))
        x, y, bw, bh = mask_util.toBbox(rle).tolist()
        rle["counts"] = rle["counts"].decode("ascii")
        anns.append({"category_id": c, "segmentation": rle, "area": float(mask_util.area(rle)),
                     "bbox": [x, y, bw, bh], "iscrowd": 0})
    return img.clip(0, 255).astype(np.uint8), anns


def _write_split(out: Path, split: str, n: int, rng, backgrounds, items, labels, size) -> None:
    from PIL import Image

    (out / "images" / split).mkdir(parents=True)
    images, annotations = [], []
    for i in range(n):
        img, anns = _compose_image(rng, backgrounds, items, labels, size)
        name = f"{split}_{i:05d}.jpg"
        Image.fromarray(img).save(out / "images" / split / name, quality=92)
        images.append({"id": i + 1, "file_name": name, "height": size, "width": size})
        for a in anns:
            annotations.append(dict(a, id=len(annotations) + 1, image_id=i + 1))
    categories = [{"id": int(c), "name": FASHION_MNIST_CLASSES[c].lower().replace(" ", "_").replace("/", "_")}
                  for c in DETECTION_CLASSES]
    coco = {"info": {"description": DATA_NOTE, "version": _VERSION}, "images": images,
            "annotations": annotations, "categories": categories}
    (out / "annotations" / f"instances_{split}.json").write_text(json.dumps(coco))


def compose_detection_dataset(root: Optional[str | os.PathLike] = None, n_train: int = 300, n_val: int = 60,
                              size: int = 128, seed: int = 0) -> Path:
    """Write (once) and return ``ROOT/rdet_fashion_det_{size}_{n_train}_{n_val}_s{seed}/`` holding
    ``images/{train,val}/*.jpg`` and ``annotations/instances_{train,val}.json``."""
    root = data_root(root)
    out = root / f"rdet_fashion_det_{size}_{n_train}_{n_val}_s{seed}"
    if (out / "annotations" / "instances_val.json").is_file():
        return out
    items, labels, backgrounds, rng = pieces(root, DETECTION_CLASSES, seed)
    with written_whole(out) as tmp:
        (tmp / "annotations").mkdir()
        _write_split(tmp, "train", n_train, rng, backgrounds, items, labels, size)
        _write_split(tmp, "val", n_val, rng, backgrounds, items, labels, size)
    return out


def detection_split_paths(dataset_dir: Path, split: str) -> Dict[str, str]:
    return {"json_file": str(dataset_dir / "annotations" / f"instances_{split}.json"),
            "image_root": str(dataset_dir / "images" / split)}

