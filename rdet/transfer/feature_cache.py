"""Fixed-feature fast path: run the frozen backbone once, train the head on cached features.

With a frozen body in eval mode, the head only ever sees ``body(augment(x))``. Extracting ``views``
augmented copies of each training image once and cycling through them (epoch ``e`` uses view
``e % views``) trains the same linear head with the same optimizer, batch size and schedule, but
pays for the backbone ``views`` times instead of once per epoch. It is NOT the paper's protocol,
which draws a fresh augmentation every epoch (``TRANSFER.CACHE_FEATURES False``, the default);
records say which protocol produced them. The head is trained by the same ``EpochTrainer`` as
every other rdet model.
"""
from __future__ import annotations

import math
from typing import Dict, List, Sequence, Tuple

import torch
import torch.nn.functional as F
from tqdm import tqdm

from rdet.engine import EpochTrainer, Runtime, build_optimizer, build_scheduler
from rdet.engine.steps import StandardStep
from rdet.core.metrics import confusion_matrix, scores_from_confusion


@torch.no_grad()
def extract_features(model, loader, rt: Runtime, desc: str = "features") -> Tuple[torch.Tensor, torch.Tensor]:
    """``(features (N, D) float32 on CPU, labels (N,))`` in ``loader`` order."""
    model.eval()
    feats, labels = [], []
    for x, y in tqdm(loader, desc=desc, leave=False, disable=None if rt.is_main else True):
        with rt.autocast():
            f = model.features(rt.inputs(x))
        feats.append(f.float().cpu())
        labels.append(y)
    return torch.cat(feats), torch.cat(labels)


def extract_views(model, loader, rt: Runtime, views: int, seed: int) -> Tuple[List[torch.Tensor], torch.Tensor]:
    """``views`` augmented feature sets of ``loader``'s images and their labels; ``loader`` must
    not shuffle and must come from :func:`rdet.engine.build_loader` (its sampler chooses the
    random stream). Image ``i`` of view ``v`` is transformed under a seed of ``(seed, "view", v,
    i)`` (``rdet.engine.streams``), so the features do not depend on the batch size, on the
    number of loader workers (persistent or not) or on the other images."""
    sampler = getattr(loader, "sampler", None)
    if not hasattr(sampler, "set_stream"):
        raise TypeError("extract_views needs a loader from rdet.engine.build_loader (a KeyedSampler picks each "
                        "view's random stream)")
    tag, old = sampler.tag, sampler.key()
    feats, labels = [], None
    try:
        sampler.tag = "view"
        for v in range(views):
            sampler.set_stream(seed=seed, epoch=v)
            f, labels = extract_features(model, loader, rt, desc=f"features (view {v + 1}/{views})")
            feats.append(f)
    finally:
        sampler.tag = tag
        sampler.set_stream(seed=old[0], epoch=old[2])
    return feats, labels


class FeatureBatches:
    """Shuffled batches of cached features: epoch ``e`` reads view ``e % len(views)`` in an order
    drawn from ``(seed, e)``, so a run is reproducible. The last partial batch is kept, as in the
    paper's per-epoch protocol (a linear head has no batch statistics to spoil)."""

    def __init__(self, views: Sequence[torch.Tensor], labels: torch.Tensor, batch: int, seed: int):
        self.views, self.labels, self.batch, self.seed, self.epoch = list(views), labels, batch, seed, 0
        self.n = len(labels)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return math.ceil(self.n / self.batch)

    def __iter__(self):
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = torch.randperm(self.n, generator=gen)
        feats = self.views[self.epoch % len(self.views)]
        for start in range(0, self.n, self.batch):
            idx = order[start:start + self.batch]
            yield feats[idx], self.labels[idx]


def train_head_on_features(head: torch.nn.Linear, views: List[torch.Tensor], labels: torch.Tensor, cfg, lr: float,
                           seed: int, rt: Runtime = None, hooks=()) -> Dict[str, float]:
    """SGD on ``head`` over cached training features ``views`` (list of ``(N, D)`` tensors) with
    the config's optimizer, batch size, epochs and schedule; returns the last epoch's statistics."""
    rt = rt or Runtime(torch.device("cpu"))
    head.to(rt.device)
    opt = build_optimizer(head.parameters(), cfg, lr=lr)
    trainer = EpochTrainer(head, FeatureBatches(views, labels, cfg.SOLVER.BATCH_SIZE, seed), opt,
                           build_scheduler(opt, cfg), rt, StandardStep(), cfg.SOLVER.EPOCHS,
                           log_every=cfg.RUNTIME.LOG_EVERY, desc="head")
    trainer.register_hooks(hooks)
    return trainer.train()


@torch.no_grad()
def evaluate_features(head: torch.nn.Linear, feats: torch.Tensor, labels: torch.Tensor, num_classes: int):
    """Top-1 / mean-per-class (%) and mean loss of ``head`` on cached features."""
    head.eval()
    w = head.weight
    logits = head(feats.to(w.device, w.dtype)).float().cpu()
    scores = scores_from_confusion(confusion_matrix(logits.argmax(1), labels, num_classes))
    scores["loss"] = float(F.cross_entropy(logits, labels))
    return scores
