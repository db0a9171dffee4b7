"""Data loaders from a config (and, re-exported from ``rdet.engine.optim``, the optimizer and schedule)."""
from __future__ import annotations

from torch.utils.data import DataLoader, DistributedSampler, Sampler

from rdet.core.errors import ConfigError
# the optimizer and lr schedule live in rdet.engine.optim; re-exported for this module's callers
from rdet.engine.optim import build_optimizer, build_scheduler  # noqa: F401
from rdet.engine.runtime import Runtime
from rdet.engine.streams import KeyedSampler, SeededItems, worker_init


class ShardSampler(Sampler):
    """Evaluation shard ``rank::world`` in order: unlike DistributedSampler, no padding, so
    every test image counts exactly once across processes."""

    def __init__(self, n: int, rank: int, world: int):
        self.indices = list(range(rank, n, world))

    def __iter__(self):
        return iter(self.indices)

    def __len__(self):
        return len(self.indices)


def build_loader(dataset, cfg, rt: Runtime, train: bool, batch_size: int = None, seed: int = 0,
                 keep_last: bool = False) -> DataLoader:
    """Per-process batch = global batch / world size. Training shuffles with
    ``DistributedSampler`` even in one process, so the order depends only on (seed, epoch): a
    resumed run sees the same batches as an uninterrupted one (the trainer calls ``set_epoch``).
    Every loader draws each sample's augmentation from its own seed, ``(seed, "train", epoch,
    index)`` for training and ``(seed, "eval", 0, index)`` otherwise (``rdet.engine.streams``), so
    the images do not depend on workers, batch size, ranks or a resume; ``loader.sampler`` is a
    :class:`~rdet.engine.streams.KeyedSampler` (``extract_views`` picks a stream per view with it).
    ``keep_last``: keep the last partial training batch, as the robustness library's loaders do.
    Only for models without train-mode BatchNorm (the fixed-feature head): a last batch of a few
    images makes BatchNorm's batch statistics degenerate and can derail training, so pretraining
    and full-network transfer drop it (at most BATCH_SIZE - 1 images an epoch; a documented
    deviation)."""
    batch = batch_size or cfg.SOLVER.BATCH_SIZE
    if batch % rt.world_size:
        raise ConfigError(f"SOLVER.BATCH_SIZE {batch} is not divisible by the {rt.world_size} processes")
    per_rank = batch // rt.world_size
    if train:
        # the shuffle seed is the same on every rank: the ranks' shards of one permutation must not overlap
        base = DistributedSampler(dataset, num_replicas=rt.world_size, rank=rt.rank, shuffle=True, seed=seed,
                                  drop_last=True)
        drop_last = not keep_last or len(base) % per_rank == 1
        sampler = KeyedSampler(base, seed, "train")
    else:
        sampler, drop_last = KeyedSampler(ShardSampler(len(dataset), rt.rank, rt.world_size), seed, "eval"), False
    workers = cfg.DATA.NUM_WORKERS
    # persistent workers are safe: a sample's seed travels with its index, not in the worker's state
    return DataLoader(SeededItems(dataset), batch_size=per_rank, sampler=sampler, num_workers=workers,
                      drop_last=drop_last, pin_memory=rt.device.type == "cuda", persistent_workers=workers > 0,
                      worker_init_fn=worker_init(seed, rt.rank) if workers > 0 else None)
