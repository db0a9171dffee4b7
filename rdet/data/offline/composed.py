"""What rdet's composed offline sets share (the detection set and the semantic one): real
Fashion-MNIST test items of some classes and scikit-image's bundled photos to paste them on, a
seeded generator, and a folder written under a temporary name and renamed when complete, so a set
on disk is always a whole one."""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator, List, Sequence, Tuple

import numpy as np

from rdet.data.offline.fashion_mnist import fashion_mnist
from rdet.data.offline.photos import photos


def pieces(root: Path, classes: Sequence[int], seed: int) -> Tuple[np.ndarray, np.ndarray, List[np.ndarray],
                                                                    np.random.Generator]:
    """``(items (N, 28, 28) uint8, their Fashion-MNIST labels, background photos, generator)``."""
    ds = fashion_mnist(train=False, root=root)
    keep = np.isin(ds.targets.numpy(), list(classes))
    return ds.data.numpy()[keep], ds.targets.numpy()[keep], list(photos().values()), np.random.default_rng(seed)


def background_crop(rng: np.random.Generator, backgrounds: Sequence[np.ndarray], size: int) -> np.ndarray:
    """A random square crop (half the short side to all of it) of a random photo, resized to
    ``size`` x ``size``: ``(size, size, 3)`` float32 RGB in 0-255."""
    from PIL import Image

    bg = backgrounds[rng.integers(len(backgrounds))]
    h, w = bg.shape[:2]
    crop = int(rng.integers(min(h, w) // 2, min(h, w) + 1))
    y0, x0 = rng.integers(0, h - crop + 1), rng.integers(0, w - crop + 1)
    return np.asarray(Image.fromarray(bg[y0:y0 + crop, x0:x0 + crop]).resize((size, size), Image.BILINEAR),
                      dtype=np.float32)


@contextlib.contextmanager
def written_whole(out: Path) -> Iterator[Path]:
    """A temporary folder beside ``out`` to write the set into; renamed to ``out`` when the block
    ends without an error, removed otherwise."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        yield tmp
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
