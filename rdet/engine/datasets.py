"""Train/test datasets for a classification config (shared by pretraining and transfer)."""
from __future__ import annotations

import random
from typing import Tuple

from torch.utils.data import Dataset, Subset

from rdet.data.classification import build_dataset, get_dataset_entry, num_classes_of
from rdet.data.offline import data_root
from rdet.data.transforms import transforms_from_cfg


def _subset(ds, n: int, seed: int):
    if n <= 0 or n >= len(ds):
        return ds
    idx = sorted(random.Random(seed).sample(range(len(ds)), n))
    return Subset(ds, idx)


def datasets_from_cfg(cfg) -> Tuple[Dataset, Dataset, int, str]:
    """``(train, test, num_classes, data_note)``; MAX_TRAIN/MAX_TEST take fixed seeded subsets."""
    d = cfg.DATA
    tf_train, tf_test = transforms_from_cfg(cfg)
    root = data_root(d.ROOT if d.ROOT != "datasets" else None)
    classes = list(d.CLASSES)
    train = build_dataset(d.DATASET, root, True, tf_train, classes)
    test = build_dataset(d.DATASET, root, False, tf_test, classes)
    n = num_classes_of(d.DATASET, train, classes)
    entry = get_dataset_entry(d.DATASET)
    train, test = _subset(train, d.MAX_TRAIN, 0), _subset(test, d.MAX_TEST, 1)
    note = entry.note or f"{d.DATASET} from {root}"
    if classes:
        note += f", classes {classes} relabelled 0..{len(classes) - 1}"
    note += f"; {len(train)} train / {len(test)} test images at {d.TRAIN_SIZE}px"
    return train, test, n, note
