"""Train/test datasets for a classification config (shared by pretraining, transfer and
evaluation), checked before any training starts.

:func:`datasets_from_cfg` reads ``cfg.DATA`` and, in this order:

1. builds both splits of ``DATA.DATASET`` under the data root (``rdet.data.paths``) with the
   transforms of ``DATA.AUGMENT_POLICY`` (``rdet.data.transforms``);
2. numbers the test labels by the TRAINING class names (no silent label shift when one split
   lacks a class folder; ``DATA.ALLOW_MISSING_TEST_CLASSES`` allows training classes without
   test images);
3. keeps ``DATA.CLASSES`` (relabelled 0..K-1) and the seeded ``DATA.MAX_TRAIN``/``MAX_TEST`` subsets;
4. checks every image file the run will read (``DATA.VERIFY_IMAGES``, see :func:`check_images`):
   an unreadable file is a one-line :class:`DatasetError` naming it, or, with
   ``DATA.SKIP_BAD_FILES``, is dropped and counted in the data note.
"""
from __future__ import annotations

import logging
import random
from concurrent.futures import ThreadPoolExecutor
from typing import List, Optional, Tuple

from PIL import Image
from torch.utils.data import Dataset, Subset

from rdet.data.classification import (align_test_labels, build_dataset, first_line, get_dataset_entry,
                                      image_files_of, missing_images_of, num_classes_of, select_classes,
                                      targets_of)
from rdet.data.paths import data_root_from_cfg
from rdet.data.transforms import resolve_policy, transforms_from_cfg
from rdet.core.errors import ConfigError, DatasetError

logger = logging.getLogger(__name__)

VERIFY_MODES = ("quick", "decode", "off")


def _subset(ds, n: int, seed: int):
    if n <= 0 or n >= len(ds):
        return ds
    idx = sorted(random.Random(seed).sample(range(len(ds)), n))
    return Subset(ds, idx)


def _looks_complete(path: str, fmt: Optional[str]) -> bool:
    """True when the header check alone is trusted: PNG (``verify`` checks every chunk's CRC) and
    JPEG ending in its end-of-image marker (a truncated JPEG does not)."""
    if fmt == "PNG":
        return True
    if fmt != "JPEG":
        return False
    with open(path, "rb") as f:
        f.seek(-2, 2)
        return f.read(2) == b"\xff\xd9"


def image_problem(path: str, mode: str = "quick") -> Optional[str]:
    """None when the image at ``path`` reads, else why not (one line).

    ``quick``: PIL parses the header (``Image.verify``), and decodes the file only when the header
    is not enough (a JPEG without its end marker, formats other than JPEG/PNG): about 0.06 ms per
    JPEG; catches missing, empty, garbage and truncated files. ``decode``: decodes every file (JPEGs
    at 1/8 scale, which still reads all their data): about 1 ms per ImageNet-sized JPEG.
    """
    try:
        with Image.open(path) as im:
            if mode == "quick" and _looks_complete(path, im.format):
                im.verify()
            else:
                im.draft("RGB", (max(1, im.width // 8), max(1, im.height // 8)))  # JPEG only; others no-op
                im.load()
    except Exception as e:  # PIL raises OSError, SyntaxError, ValueError, struct.error... for broken files
        return f"{type(e).__name__}: {first_line(e)}" if str(e) else type(e).__name__
    return None


def check_images(ds: Dataset, mode: str, skip_bad: bool, workers: int = 1, name: str = "") -> Tuple[Dataset, int]:
    """``(ds, 0)`` when every image file behind ``ds`` reads, ``(ds without the bad ones, count)``
    when ``skip_bad``; otherwise a :class:`DatasetError` naming the first bad file and the count.

    Runs before any training so that a broken file costs no work; in-memory datasets (CIFAR,
    Fashion-MNIST, digits) and ``mode`` ``off`` are not checked (a file that breaks later still
    fails as one line, through ``classification.read_image``). ``workers`` threads (PIL releases
    the GIL while decoding).
    """
    if mode not in VERIFY_MODES:
        raise ConfigError(f"DATA.VERIFY_IMAGES {mode!r} is not one of: {', '.join(VERIFY_MODES)}")
    files = image_files_of(ds) if mode != "off" else None
    if not files:
        return ds, 0
    with ThreadPoolExecutor(max(1, workers)) as pool:
        problems = list(pool.map(lambda f: image_problem(f, mode), files))
    bad: List[int] = [i for i, p in enumerate(problems) if p]
    if not bad:
        return ds, 0
    if not skip_bad:
        more = f" ({len(bad) - 1} more unreadable)" if len(bad) > 1 else ""
        raise DatasetError(f"{name}: unreadable image {files[bad[0]]} ({problems[bad[0]]}){more}; replace or remove "
                           f"it, or set DATA.SKIP_BAD_FILES True to skip unreadable files")
    logger.warning("%s: skipping %d unreadable image files (first: %s: %s)", name, len(bad), files[bad[0]],
                   problems[bad[0]])
    bad_set = set(bad)
    return Subset(ds, [i for i in range(len(ds)) if i not in bad_set]), len(bad)


def _check_selected_classes(train: Dataset, classes: List[int], name: str) -> None:
    present = set(targets_of(train))
    empty = [c for c in range(len(classes)) if c not in present]
    if empty:
        raise DatasetError(f"{name}: DATA.CLASSES {classes[empty[0]]} has no training images")


def datasets_from_cfg(cfg) -> Tuple[Dataset, Dataset, int, str]:
    """``(train, test, num_classes, data_note)``: see the module docstring for what is checked.

    ``data_note`` (one line, for logs and records) says what the data is, the augmentation policy,
    the sizes, and any images skipped (missing from a Birdsnap download, or unreadable).
    """
    d = cfg.DATA
    name = d.DATASET
    tf_train, tf_test = transforms_from_cfg(cfg)
    root = data_root_from_cfg(cfg)
    classes = [int(c) for c in d.CLASSES]
    train = build_dataset(name, root, True, tf_train)
    test = align_test_labels(train, build_dataset(name, root, False, tf_test), d.ALLOW_MISSING_TEST_CLASSES, name)
    n = num_classes_of(name, train, classes)
    missing = missing_images_of(train) + missing_images_of(test)
    if classes:
        train, test = select_classes(train, classes), select_classes(test, classes)
        _check_selected_classes(train, classes, name)
    train, test = _subset(train, d.MAX_TRAIN, 0), _subset(test, d.MAX_TEST, 1)
    # unreadable files go before the validation split, so that the split is the one rdet.select
    # makes (it splits the checked training set too)
    train, bad_train = check_images(train, d.VERIFY_IMAGES, d.SKIP_BAD_FILES, d.NUM_WORKERS, f"{name} train")
    test, bad_test = check_images(test, d.VERIFY_IMAGES, d.SKIP_BAD_FILES, d.NUM_WORKERS, f"{name} test")
    val_note = ""
    if d.VAL_SIZE:  # evaluate on a held-out part of the training data instead of the test set
        from rdet.data.validation import validation_holdout

        plain = build_dataset(name, root, True, tf_test)
        plain = _subset(select_classes(plain, classes) if classes else plain, d.MAX_TRAIN, 0)
        if bad_train:  # the same images as the checked training set (check_images keeps a Subset)
            plain = Subset(plain, train.indices)
        train, test, val_note = validation_holdout(train, plain, d.VAL_SIZE, d.VAL_SEED, test)

    note = get_dataset_entry(name).note or f"{name} from {root}"
    if classes:
        note += f", classes {classes} relabelled 0..{len(classes) - 1}"
    elif get_dataset_entry(name).num_classes not in (0, n):
        note += f" ({n} class folders, not the full dataset's {get_dataset_entry(name).num_classes})"
    augment = resolve_policy(d.AUGMENT_POLICY, name) if d.AUGMENT else "none"
    note += f"; {len(train)} train / {len(test)} test images at {d.TRAIN_SIZE}px, augmentation {augment}"
    if missing:
        note += f"; {missing} listed images missing from the download (skipped)"
    if bad_train or bad_test:
        note += f"; {bad_train} train / {bad_test} test unreadable image files skipped"
    note += val_note  # "; validation: ..." (validation_holdout's note starts with its separator)
    return train, test, n, note
