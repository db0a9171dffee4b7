"""Fixed-feature fast path: run the frozen backbone once, train the head on cached features.

With a frozen body in eval mode, the head only ever sees ``body(augment(x))``. Extracting
``views`` augmented copies of each training image once and cycling through them (epoch ``e``
uses view ``e % views``) trains the same linear head with the same optimizer, batch size and
schedule, but pays for the backbone ``views`` times instead of once per epoch.
"""
from __future__ import annotations

from typing import Dict, Tuple

import torch
import torch.nn.functional as F
from tqdm import tqdm

from rdet.engine import Runtime, build_optimizer, build_scheduler
from rdet.metrics import confusion_matrix, scores_from_confusion


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


def train_head_on_features(head: torch.nn.Linear, views, labels: torch.Tensor, cfg, lr: float, seed: int,
                           writer=None) -> Dict[str, float]:
    """SGD on the head over cached training features ``views`` (list of (N, D) tensors)."""
    opt = build_optimizer(head.parameters(), cfg, lr=lr)
    sched = build_scheduler(opt, cfg)
    gen = torch.Generator().manual_seed(seed)
    n, batch = len(labels), cfg.SOLVER.BATCH_SIZE
    head.train()
    loss = torch.tensor(0.0)
    for epoch in range(cfg.SOLVER.EPOCHS):
        feats = views[epoch % len(views)]
        order = torch.randperm(n, generator=gen)
        for start in range(0, n - batch + 1 if n >= batch else 1, batch):
            idx = order[start:start + batch]
            loss = F.cross_entropy(head(feats[idx]), labels[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        sched.step()
        if writer is not None:
            writer.add_scalar("transfer/loss", loss.item(), epoch)
    return {"loss": float(loss.detach())}


@torch.no_grad()
def evaluate_features(head: torch.nn.Linear, feats: torch.Tensor, labels: torch.Tensor, num_classes: int):
    head.eval()
    return scores_from_confusion(confusion_matrix(head(feats).argmax(1), labels, num_classes))
