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
