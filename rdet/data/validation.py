"""A validation split held out from the training data, for choosing models and hyperparameters
without looking at the test set.

The paper picks its best eps and learning rate by test accuracy; ``rdet.select`` ranks on this
split instead and reports the test set once. The split is

* stratified: every class gives the same fraction of its images (largest remainders settle the
  rounding, so the total is exactly the requested size and no class loses its last training image);
* seeded: the same ``(targets, size, seed)`` give the same split on every machine, another seed
  another split (Python's ``random.Random``, independent of torch's global state);
* a subset of the training set, so it is disjoint from the test set whenever the dataset's own
  train and test splits are; :func:`check_disjoint` verifies it (by file for datasets read from
  files, by item for datasets carved out of one in-memory set).
"""
from __future__ import annotations

import random
from collections import defaultdict
from typing import Dict, List, Sequence, Set, Tuple

from torch.utils.data import ConcatDataset, Dataset, Subset

from rdet.data.classification import image_files_of, targets_of
from rdet.core.errors import DatasetError


def validation_count(n: int, size: float) -> int:
    """Images to hold out of ``n``: ``size`` < 1 is a fraction, ``size`` >= 1 a count."""
    if size <= 0:
        raise DatasetError(f"validation size must be > 0 (a fraction below 1 or an image count), not {size:g}")
    count = round(size * n) if size < 1 else int(size)
    if not 0 < count < n:
        raise DatasetError(f"a validation split of {size:g} leaves {n - count} of {n} training images; "
                           f"choose a size that keeps both parts non-empty")
    return count


def split_indices(targets: Sequence[int], size: float, seed: int) -> Tuple[List[int], List[int]]:
    """``(train indices, validation indices)``, both sorted, into ``targets``' dataset.

    Class ``c`` with ``n_c`` images gives ``floor(n_c * f)`` images plus one for the classes with
    the largest remainders, ``f = count / n``; a class never gives all of its images.
    """
    n = len(targets)
    count = validation_count(n, size)
    by_class: Dict[int, List[int]] = defaultdict(list)
    for i, t in enumerate(targets):
        by_class[int(t)].append(i)
    classes = sorted(by_class)
    frac = count / n
    quota = {c: int(len(by_class[c]) * frac) for c in classes}
    rng = random.Random(seed)
    # ties in the remainder are broken by a seeded shuffle, not by class order
    order = sorted(classes, key=lambda c: (-(len(by_class[c]) * frac - quota[c]), rng.random()))
    for c in order:
        if sum(quota.values()) >= count:
            break
        if quota[c] + 1 < len(by_class[c]):
            quota[c] += 1
    val: List[int] = []
    for c in classes:
        idx = by_class[c][:]
        rng.shuffle(idx)
        val += idx[:quota[c]]
    held = set(val)
    return [i for i in range(n) if i not in held], sorted(val)


def base_items(ds: Dataset) -> List[Tuple[Dataset, int]]:
    """``(base dataset, index)`` of every item of ``ds``, through ``Subset``, ``ConcatDataset`` and
    rdet's class selection (anything with ``ds`` and ``indices``)."""
    if isinstance(ds, Subset):
        inner = base_items(ds.dataset)
        return [inner[i] for i in ds.indices]
    if isinstance(ds, ConcatDataset):
        return [it for d in ds.datasets for it in base_items(d)]
    if hasattr(ds, "indices") and hasattr(ds, "ds"):
        inner = base_items(ds.ds)
        return [inner[i] for i in ds.indices]
    return [(ds, i) for i in range(len(ds))]


def check_disjoint(val: Dataset, test: Dataset) -> None:
    """Refuse (:class:`DatasetError`) when a validation image is also a test image: the same file
    for file-backed datasets, the same item of the same in-memory dataset otherwise."""
    val_files, test_files = image_files_of(val), image_files_of(test)
    if val_files is not None and test_files is not None:
        shared = sorted(set(val_files) & set(test_files))
    else:
        test_items: Set = {(id(b), i) for b, i in base_items(test)}
        shared = [f"item {i}" for b, i in base_items(val) if (id(b), i) in test_items]
    if shared:
        raise DatasetError(f"{len(shared)} validation images are also test images (e.g. {shared[0]}): the dataset's "
                           f"train and test splits overlap")


def validation_holdout(train_aug: Dataset, train_plain: Dataset, size: float, seed: int,
                       test: Dataset = None) -> Tuple[Subset, Subset, str]:
    """``(training part, validation part, note)``: the training part keeps the training
    transform (``train_aug``), the validation part reads the same images through the test
    transform (``train_plain``: the same training set built with the test transform). With
    ``test``, the validation part is checked to share no image with it.

    This is what ``DATA.VAL_SIZE`` > 0 means for a run: train on the training part, evaluate on
    the validation part instead of the test set (``rdet.select`` uses it to choose without looking
    at the test set).
    """
    targets = targets_of(train_plain)
    if len(train_aug) != len(train_plain) or targets != targets_of(train_aug):
        raise AssertionError("the training set differs between its two transforms")
    tr, va = split_indices(targets, size, seed)
    val = Subset(train_plain, va)
    if test is not None:
        check_disjoint(val, test)
    note = f"; validation: {len(va)} of the {len(targets)} training images held out (stratified, seed {seed})"
    return Subset(train_aug, tr), val, note
