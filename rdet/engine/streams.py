"""Random streams that depend on where a draw happens, not on how the work is split.

A draw's seed is a hash of its position: the run's seed, the stream's name, and numbers that
place it (epoch, sample index, iteration, rank). Nothing is carried from one draw to the next,
so a result does not depend on the number of data-loader workers, on the batch size, on
``persistent_workers``, or on where a run was killed and resumed: a resumed run recomputes the
same seeds (like counter-based generators, e.g. JAX's ``PRNGKey`` folding).

* **Data augmentation, per sample**: :class:`KeyedSampler` yields ``(index, key)`` pairs and
  :class:`SeededItems` seeds torch's CPU generator and Python's ``random`` (in workers also
  NumPy's) from ``(key, index)`` just before the sample's transform, then puts them back. Training uses
  ``key = (seed, "train", epoch)``: an image's crop/flip/jitter in an epoch is the same with 0 or
  8 workers, with any batch size and on any number of processes, and two ranks (which read
  different images) draw different crop parameters. Feature extraction (``extract_views``) uses
  ``(seed, "view", v)``. The DistributedSampler's shuffle seed is the run's seed on every rank,
  as it must be (the ranks' shards must not overlap).
* **Training steps, per iteration**: :func:`step_seed` seeds the global generators (CPU and
  CUDA) before each training step from ``(seed, epoch, iteration, rank)``: PGD / FGSM-RS random
  starts and dropout differ between ranks and continue exactly after a resume, mid-epoch
  included, without saving generator states.
* **Workers**: :func:`worker_init` seeds each loader worker's generators from
  ``(seed, rank, worker)`` for draws outside a sample's transform (rdet's transforms make none).
"""
from __future__ import annotations

import contextlib
import hashlib
import random
from typing import Any, Iterator, Optional, Sequence, Tuple

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler, get_worker_info

_MASK63 = (1 << 63) - 1


def stream_seed(*parts: Any) -> int:
    """A 63-bit seed from ``parts`` (ints and strings): stable across processes and Python runs
    (unlike ``hash()``), and unrelated for neighbouring parts."""
    digest = hashlib.blake2b(repr(tuple(parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & _MASK63


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Inside: torch's CPU generator and ``random`` seeded from ``seed`` (in a loader worker,
    NumPy's global generator too). After, in the main process: both as they were (a sample
    seeded there, with ``NUM_WORKERS 0``, must not move the training run's generators). A worker
    needs no restoring: every sample reseeds it. NumPy is left alone in the main process:
    saving and restoring its state costs ~0.4 ms a sample, and rdet's transforms (torchvision's)
    draw from torch only."""
    worker = get_worker_info() is not None
    if worker:
        torch.default_generator.manual_seed(seed)
        random.seed(seed)
        np.random.seed(seed & 0xFFFFFFFF)
        yield
        return
    cpu, py = torch.get_rng_state(), random.getstate()
    torch.default_generator.manual_seed(seed)  # the CPU one only (torch.manual_seed would reseed CUDA's too)
    random.seed(seed)
    try:
        yield
    finally:
        torch.set_rng_state(cpu)
        random.setstate(py)


class SeededItems(Dataset):
    """``ds`` whose items, asked for as ``(index, key)``, are drawn under :func:`seeded` with a
    seed of ``(key, index)``; a plain ``index`` reads ``ds[index]`` as it is."""

    def __init__(self, ds):
        self.ds = ds

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, item):
        if not isinstance(item, tuple):
            return self.ds[item]
        index, key = item
        with seeded(stream_seed(*key, int(index))):
            return self.ds[index]


class KeyedSampler(Sampler):
    """``base``'s indices as ``(index, (seed, tag, epoch))``, for :class:`SeededItems`.

    :meth:`set_epoch` also reshuffles ``base`` (a DistributedSampler); :meth:`set_stream`
    chooses another seed / epoch (``extract_views``: one per view); :meth:`start_at` skips the
    first ``n`` samples of the next pass only (a run resumed in the middle of an epoch), without
    reading them."""

    def __init__(self, base: Sampler, seed: int, tag: str):
        self.base, self.seed, self.tag, self.epoch, self._skip = base, int(seed), tag, 0, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
        if hasattr(self.base, "set_epoch"):
            self.base.set_epoch(epoch)

    def set_stream(self, seed: Optional[int] = None, epoch: Optional[int] = None) -> None:
        if seed is not None:
            self.seed = int(seed)
        if epoch is not None:
            self.set_epoch(epoch)

    def start_at(self, n: int) -> None:
        self._skip = int(n)

    def key(self) -> Tuple[int, str, int]:
        return self.seed, self.tag, self.epoch

    def __iter__(self):
        skip, self._skip = self._skip, 0
        key = self.key()
        for j, i in enumerate(self.base):
            if j >= skip:
                yield int(i), key

    def __len__(self) -> int:
        return max(0, len(self.base) - self._skip)


class worker_init:  # a class, not a closure: loader workers may be started by pickling it
    """``worker_init_fn`` seeding a worker's generators from ``(seed, rank, worker id)``."""

    def __init__(self, seed: int, rank: int):
        self.seed, self.rank = int(seed), int(rank)

    def __call__(self, worker_id: int) -> None:
        s = stream_seed(self.seed, "worker", self.rank, worker_id)
        torch.manual_seed(s)
        random.seed(s)
        np.random.seed(s & 0xFFFFFFFF)


def step_seed(seed: int, epoch: int, iteration: int, rank: int) -> None:
    """Seed the global generators (CPU and every CUDA device) for one training step."""
    s = stream_seed(seed, "step", epoch, iteration, rank)
    torch.manual_seed(s)
    random.seed(s)


def guard_generator(seed: int, device: torch.device) -> torch.Generator:
    """A fresh generator on ``device`` for the overfitting guard's PGD start: the same start at
    every measurement, and no draw from the training run's generators."""
    return torch.Generator(device=device).manual_seed(stream_seed(seed, "guard"))


def stratified_indices(labels: Sequence[int], n: int, seed: int) -> list:
    """``n`` indices taking the classes in turn (each class's images in a seeded order), so that
    ``min(n, classes)`` classes are covered and class shares differ by at most one image."""
    gen = torch.Generator().manual_seed(stream_seed(seed, "guard-batch"))
    by_class: dict = {}
    for i in torch.randperm(len(labels), generator=gen).tolist():
        by_class.setdefault(int(labels[i]), []).append(i)
    queues = [by_class[c] for c in sorted(by_class)]
    out, depth = [], 0
    while len(out) < n and any(depth < len(q) for q in queues):
        out += [q[depth] for q in queues if depth < len(q)][: n - len(out)]
        depth += 1
    return out
