"""Fixed-feature selection of one model: features once (cached), every head candidate on them.

What one model costs: ``SELECT.VIEWS`` augmented passes over the training part, one centre-crop
pass over the whole training set (training and validation parts) and one over the test set; then
only linear heads. The record lists every candidate's validation and test score; ranking uses the
validation score only.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Dict

import torch
from torch.utils.data import Subset

from rdet.backbones import create_classifier
from rdet.data.build import datasets_from_cfg
from rdet.data.classification import get_dataset_entry
from rdet.data.paths import data_root
from rdet.data.validation import validation_holdout
from rdet.engine import build_loader, setup_runtime
from rdet.select.cache import cache_key, dataset_fingerprint, file_identity, load_or_extract
from rdet.select.heads import logreg_candidates, sgd_candidates
from rdet.select.models import model_file
from rdet.transfer import extract_features, extract_views


def selection_data(cfg, decode_check: bool = True) -> Dict[str, Any]:
    """The training set twice (augmented for the views, centre-crop for validation and L-BFGS),
    the test set, the validation split (``DATA.VAL_SIZE``, ``DATA.VAL_SEED``) and what the data
    is. Raises for a missing dataset or a split that cannot be made, before any model is touched.

    ``decode_check=False`` (the cells, after ``rdet.select`` checked the files once): the image
    files are checked with ``DATA.VERIFY_IMAGES quick`` instead of decoding every one per model.
    """
    base = cfg.clone()
    base.defrost()
    base.DATA.VAL_SIZE = 0  # the split is made here, from the whole training set
    if not decode_check and base.DATA.VERIFY_IMAGES == "decode":
        base.DATA.VERIFY_IMAGES = "quick"
    train_aug, test, num_classes, note = datasets_from_cfg(base)
    plain = base.clone()
    plain.DATA.AUGMENT = False
    train_plain = datasets_from_cfg(plain)[0]
    train_part, val, vnote = validation_holdout(train_aug, train_plain, cfg.DATA.VAL_SIZE, cfg.DATA.VAL_SEED, test)
    return {"train_aug": train_aug, "train_plain": train_plain, "test": test, "num_classes": num_classes,
            "note": note + vnote, "train_idx": train_part.indices, "val_idx": val.indices}


def _data_key(cfg, data) -> Dict[str, Any]:
    d = cfg.DATA
    return {"dataset": d.DATASET, "root": str(data_root(d.ROOT if d.ROOT != "datasets" else None).resolve()),
            "classes": [int(c) for c in d.CLASSES], "max_train": d.MAX_TRAIN, "max_test": d.MAX_TEST,
            "val_size": float(cfg.DATA.VAL_SIZE), "val_seed": int(cfg.DATA.VAL_SEED),
            "train": dataset_fingerprint(data["train_plain"]), "test": dataset_fingerprint(data["test"])}


def _extract(model, data, cfg, rt) -> Dict[str, torch.Tensor]:
    def loader(ds):
        return build_loader(ds, cfg, rt, train=False, batch_size=int(cfg.SELECT.EXTRACT_BATCH))

    views, _ = extract_views(model, loader(Subset(data["train_aug"], data["train_idx"])), rt, int(cfg.SELECT.VIEWS),
                             cfg.SEED)
    center, labels = extract_features(model, loader(data["train_plain"]), rt, desc="centre crop")
    test, test_labels = extract_features(model, loader(data["test"]), rt, desc="test")
    tr, va = torch.tensor(data["train_idx"]), torch.tensor(data["val_idx"])
    return {"train_views": views, "train_center": center[tr], "train_labels": labels[tr], "val": center[va],
            "val_labels": labels[va], "test": test, "test_labels": test_labels}


def select_one(cfg, weights: str, cache_dir: Path, label: str, data: Dict[str, Any] = None,
               allow_pickle: bool = False) -> Dict[str, Any]:
    """Rank-one-model record: backbone, every head candidate's val/test score, the chosen one
    (best validation score; ties go to the earlier candidate), cache use and times."""
    start = time.time()
    rt = setup_runtime(cfg)
    data = data or selection_data(cfg, decode_check=False)
    path, bmeta = model_file(weights, allow_pickle)
    arch = bmeta["arch"]
    key = cache_key({**file_identity(path)}, arch, cfg, _data_key(cfg, data))

    def extract():
        model = create_classifier(arch, data["num_classes"], weights=str(path), allow_pickle=allow_pickle)
        return _extract(rt.prepare(model), data, cfg, rt)

    feats = load_or_extract(cache_dir, label, key, extract)
    metric = get_dataset_entry(cfg.DATA.DATASET).metric
    # heads train and evaluate where the backbone ran; evaluation labels stay on the CPU (the
    # confusion matrix is computed there)
    feats["train_views"] = [v.to(rt.device) for v in feats["train_views"]]
    for k in ("train_center", "train_labels", "val", "test"):
        feats[k] = feats[k].to(rt.device)
    heads_start = time.time()
    cands = sgd_candidates(feats, data["num_classes"], cfg, metric, rt)
    if len(cfg.SELECT.LOGREG_L2):
        cands += logreg_candidates(feats, data["num_classes"], cfg, metric)
    head_time = time.time() - heads_start
    best = max(cands, key=lambda c: c["val"])
    return {"task": "select", "name": label, "dataset": cfg.DATA.DATASET, "classes": [int(c) for c in cfg.DATA.CLASSES],
            "data_note": data["note"], "metric": metric,
            "backbone": {"arch": arch, "norm": bmeta.get("norm"), "eps": bmeta.get("eps"), "source": str(weights)},
            "candidates": cands, "best": best, "val_value": best["val"], "test_value": best["test"],
            "n_train": len(data["train_idx"]), "n_val": len(data["val_idx"]), "n_test": len(feats["test_labels"]),
            "views": int(cfg.SELECT.VIEWS), "epochs": cfg.SOLVER.EPOCHS, "seed": cfg.SEED, "downscale": cfg.DATA.DOWNSCALE,
            "cache": {"path": feats["path"], "hit": feats["hit"]}, "extract_time_s": float(feats["extract_time_s"]),
            "head_time_s": head_time, "selection_time_s": float(feats["extract_time_s"]) + head_time,
            "wall_time_s": time.time() - start}
