"""Transferability estimators on a finished selection: every model scored from its cached features.

A selection cell (:func:`rdet.select.fixed.select_one`) leaves its features in the feature cache
and names the entry in its record. The estimators (:mod:`rdet.select.estimators`) read that entry
-- no backbone pass, no cell rerun -- so asking for another estimator on a finished selection
costs seconds, and the estimators never enter the study's settings.

What each estimator sees: the centre-crop features of the whole training set (the training and
the validation parts; an estimator needs no held-out split) with their labels, in float64. LEEP
and NCE also need the source model's class probabilities: the checkpoint's own classifier head
(ImageNet's 1000 classes for the paper's releases; the pretraining classes for rdet's own models)
applied to the same cached features, softmax in float64. A checkpoint without that head gets no
LEEP / NCE score (``None``, with a note), never a made-up one.

``linear`` is the selection's own answer: the best head's validation score; its time is the heads'.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Dict, Optional, Sequence

import numpy as np
import torch

from rdet.backbones import get_spec, load_checkpoint
from rdet.core.errors import RdetError, first_line
from rdet.select.cache import read_features
from rdet.select.estimators import get_estimator
from rdet.select.models import model_file


def cached_features(rec: Dict[str, Any]):
    """``(features (N, D) float64, labels (N,))`` of the training set (training then validation
    part) from the feature-cache entry the record names."""
    path = Path(rec["cache"]["path"])
    entry = read_features(path)
    if entry is None:
        raise RdetError(f"{rec['name']}: its feature cache {path} is gone or unreadable; remove "
                        f"{Path('select') / rec['name'] / 'result.json'} in the output folder to extract again")
    f = torch.cat([entry["train_center"], entry["val"]]).double().numpy()
    y = torch.cat([entry["train_labels"], entry["val_labels"]]).numpy()
    return f, y


def source_probabilities(rec: Dict[str, Any], features: np.ndarray, allow_pickle: bool = False) -> Optional[np.ndarray]:
    """softmax(F W^T + b) of the checkpoint's own head, (N, source classes) float64; ``None``
    when the checkpoint holds no head that reads these features."""
    b = rec["backbone"]
    path, _ = model_file(b["source"], allow_pickle)
    sd = load_checkpoint(path, arch=b["arch"], allow_pickle=allow_pickle).state_dict
    head = get_spec(b["arch"]).classifier
    w, bias = sd.get(f"{head}.weight"), sd.get(f"{head}.bias")
    if w is None or w.dim() != 2 or w.shape[1] != features.shape[1]:
        return None
    logits = features @ w.double().numpy().T + (0 if bias is None else bias.double().numpy())
    logits -= logits.max(1, keepdims=True)
    p = np.exp(logits)
    return p / p.sum(1, keepdims=True)


def estimator_kwargs(name: str, cfg) -> Dict[str, Any]:
    """The config's settings of ``name`` (``SELECT.KNN_K``; N-LEEP's mixture seed is ``SEED``)."""
    return {"knn": {"k": int(cfg.SELECT.KNN_K)}, "nleep": {"seed": int(cfg.SEED)}}.get(name, {})


def _fit_to(name: str, kwargs: Dict[str, Any], n: int) -> str:
    """A k-NN k of at least the sample count lowered to N - 1 (every other sample), said in a note."""
    if name == "knn" and kwargs["k"] >= n:
        kwargs["k"] = n - 1
        return f"k lowered to {n - 1} (N - 1)"
    return ""


def score_record(rec: Dict[str, Any], names: Sequence[str], cfg, allow_pickle: bool = False) -> Dict[str, Dict]:
    """``{name: {"score": float or None, "time_s": seconds, "note": str}}`` for one model's record."""
    out: Dict[str, Dict] = {}
    feats = probs = None
    for name in names:
        if name == "linear":
            out[name] = {"score": float(rec["val_value"]), "time_s": float(rec["head_time_s"]),
                         "note": "validation-split heads"}
            continue
        fn = get_estimator(name)
        if feats is None:
            feats = cached_features(rec)
        start = time.time()
        kwargs = estimator_kwargs(name, cfg)
        if fn.needs_source:
            if probs is None:
                probs = source_probabilities(rec, feats[0], allow_pickle)
                probs = probs if probs is not None else False
            if probs is False:
                out[name] = {"score": None, "time_s": 0.0, "note": "checkpoint has no source head"}
                continue
            kwargs["source_probs"] = probs
        n, d = feats[0].shape
        note = _fit_to(name, kwargs, n)
        try:
            score = float(fn(*feats, **kwargs))
        except (RdetError, np.linalg.LinAlgError) as e:
            # e.g. fp16-cached features that overflowed, or a dead backbone's zero scatter: this model
            # gets no score from this estimator (said in the table), the ranking is still written
            out[name] = {"score": None, "time_s": time.time() - start, "note": first_line(e, 160)}
            continue
        if name == "hscore" and d >= n - 1:
            note = f"{d} dims >= {n} samples - 1: the same for every model"
        out[name] = {"score": None if np.isnan(score) else score, "time_s": time.time() - start,
                     "note": "NaN score" if np.isnan(score) else note}
    return out
