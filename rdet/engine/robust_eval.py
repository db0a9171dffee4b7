"""Per-image clean and adversarial predictions, batch by batch: resumable and split over processes.

Batches are fixed chunks of the test set, whatever the number of processes: batch ``k`` holds the
images ``[k*B, (k+1)*B)`` and runs on process ``k % world`` (:class:`ShardSampler` over batch
indices), and every attack on it is seeded with :func:`batch_seed` ``(seed, k)``. An image's
predictions therefore depend on its batch only: not on which process ran it, nor on whether the
run was killed and resumed. (Splitting images rather than batches would change what each batch
holds, and AutoAttack's random starts are drawn per batch.)

Each finished batch is written atomically to ``<state dir>/batch_<k>.csv``; a later run with the
same signature (``signature.json`` there) skips those batches. :func:`collect` reads them all back
in image order. The state folder must be visible to every process (one machine, or a shared
file system).

Inputs are RGB in [0, 1] (normalisation inside the model); the model is in eval mode.
"""
from __future__ import annotations

import csv
import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

import torch
from torch.utils.data import DataLoader, Sampler
from tqdm import tqdm

from rdet.core.atomic import atomic_path, remove_stale_temps, save_json
from rdet.core.errors import ConfigError
from rdet.engine.build import ShardSampler
from rdet.engine.runtime import Runtime

logger = logging.getLogger(__name__)

SIGNATURE = "signature.json"
# attack(model, x, y, seed) -> the model's labels for the attacked images, (N,) long
AttackFn = Callable[[torch.nn.Module, torch.Tensor, torch.Tensor, int], torch.Tensor]


def batch_seed(seed: int, k: int) -> int:
    """The seed of batch ``k``: ``seed`` itself for the first batch (so a one-batch run is the
    same computation as the attack called once with ``seed``), then far-apart values."""
    return (int(seed) + 1_000_003 * int(k)) % 2**31


@dataclass
class Attack:
    """One attack of the evaluation: ``column`` names it in the per-image table, ``fn`` runs it,
    ``record`` is what ``result.json`` says about it (settings; the numbers are added later)."""
    column: str
    fn: AttackFn
    record: Dict[str, Any] = field(default_factory=dict)


class _Batches(Sampler):
    """The index lists of batches ``ks`` of size ``batch`` over ``n`` images (a batch sampler)."""

    def __init__(self, ks: Sequence[int], n: int, batch: int):
        self.ks, self.n, self.batch = list(ks), n, batch

    def __iter__(self):
        for k in self.ks:
            yield list(range(k * self.batch, min(self.n, (k + 1) * self.batch)))

    def __len__(self):
        return len(self.ks)


def n_batches(n: int, batch: int) -> int:
    return math.ceil(n / batch)


def prepare_state(state_dir: Path, signature: Dict[str, Any], rt: Runtime, on_mismatch: str = "error") -> List[int]:
    """Make ``state_dir`` hold this run's signature (the main process writes it; the others wait)
    and return the batches already finished there. A folder left by a run with other settings is
    refused naming the settings that differ (``on_mismatch`` "error"), or emptied ("restart")."""
    if rt.is_main:
        state_dir.mkdir(parents=True, exist_ok=True)
        remove_stale_temps(state_dir)
        sig_file = state_dir / SIGNATURE
        if sig_file.is_file():
            stored = json.loads(sig_file.read_text())
            diff = [k for k in sorted(set(stored) | set(signature)) if stored.get(k) != signature.get(k)]
            if diff and on_mismatch != "restart":
                shown = "; ".join(f"{k} {stored.get(k)!r} there vs {signature.get(k)!r} now" for k in diff[:4])
                raise ConfigError(f"{state_dir} holds a partial evaluation with other settings ({shown}); use another "
                                  f"output folder, delete it, or set RUNTIME.RESUME_MISMATCH restart")
            if diff:
                logger.warning("%s: discarding a partial evaluation with other settings (%s)", state_dir, ", ".join(diff))
                for f in state_dir.glob("batch_*.csv"):
                    f.unlink()
        save_json(signature, sig_file)
    rt.barrier()
    return sorted(int(f.stem.split("_")[1]) for f in state_dir.glob("batch_*.csv"))


def run_batches(model: torch.nn.Module, dataset, attacks: Sequence[Attack], rt: Runtime, batch_size: int, seed: int,
                state_dir: Path, done: Sequence[int], num_workers: int = 0, ids: Optional[Sequence[str]] = None) -> int:
    """Clean and attacked predictions for this process's unfinished batches, each written to
    ``state_dir`` when it is done. Returns how many batches this process ran."""
    n = len(dataset)
    mine = [k for k in ShardSampler(n_batches(n, batch_size), rt.rank, rt.world_size) if k not in set(done)]
    if not mine:
        return 0
    loader = DataLoader(dataset, batch_sampler=_Batches(mine, n, batch_size), num_workers=num_workers,
                        pin_memory=rt.device.type == "cuda")
    model.eval()
    total = sum(min(n, (k + 1) * batch_size) - k * batch_size for k in mine)
    bar = tqdm(total=total, desc="robust eval", unit="img", leave=False, disable=None if rt.is_main else True,
               dynamic_ncols=True)
    for k, (x, y) in zip(mine, loader):
        x, y = rt.inputs(x), y.to(rt.device)
        with torch.no_grad(), rt.autocast():
            preds = {"clean": model(x).float().argmax(1)}
        for a in attacks:
            preds[a.column] = a.fn(model, x, y, batch_seed(seed, k)).to(rt.device)
        _write_batch(state_dir / f"batch_{k}.csv", k * batch_size, y, preds, ids)
        bar.update(len(y))
        bar.set_postfix({c: f"{(p == y).float().mean().item():.0%}" for c, p in preds.items()}, refresh=False)
    bar.close()
    return len(mine)


def _write_batch(path: Path, first: int, y: torch.Tensor, preds: Dict[str, torch.Tensor], ids) -> None:
    cols = list(preds)
    values = {c: p.tolist() for c, p in preds.items()}
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["index", "image_id", "label", *cols])
        for i, label in enumerate(y.tolist()):
            idx = first + i
            w.writerow([idx, ids[idx] if ids is not None else idx, label, *(values[c][i] for c in cols)])


def collect(state_dir: Path, n: int, columns: Sequence[str]) -> List[Dict[str, Any]]:
    """Every image's row (``index``, ``image_id``, ``label`` and one predicted label per column,
    ``clean`` first), in image order, from the batch files of all processes."""
    rows: List[Optional[Dict[str, Any]]] = [None] * n
    for f in state_dir.glob("batch_*.csv"):
        with open(f, newline="") as fh:
            for r in csv.DictReader(fh):
                i = int(r["index"])
                rows[i] = {"index": i, "image_id": r["image_id"], "label": int(r["label"]),
                           **{c: int(r[c]) for c in ["clean", *columns]}}
    absent = [i for i, r in enumerate(rows) if r is None]
    if absent:
        raise RuntimeError(f"{state_dir}: {len(absent)} images have no predictions (first: {absent[0]})")
    return rows  # type: ignore[return-value]


def write_per_image(rows: Sequence[Dict[str, Any]], columns: Sequence[str], path: Path) -> None:
    """``per_image.csv``: image id, label, clean prediction and correctness, then per attack the
    prediction on the attacked image and whether it is still correct (robust, 0/1)."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["image_id", "label", "clean_pred", "clean_correct",
                    *[h for c in columns for h in (f"{c}_pred", f"{c}_robust")]])
        for r in rows:
            y = r["label"]
            w.writerow([r["image_id"], y, r["clean"], int(r["clean"] == y),
                        *[v for c in columns for v in (r[c], int(r[c] == y))]])
