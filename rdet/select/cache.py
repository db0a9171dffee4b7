"""On-disk feature cache of the selection: one file per (model, data, extraction settings).

The file name is a hash of everything the features depend on, so a changed input gets a new
entry and never reuses a stale one:

* the model file's identity (resolved path, size, modification time in ns) and architecture;
* the dataset: name, resolved data root, class subset, subset sizes, the training/validation split
  (only the training part gets augmented views), and a fingerprint of its content (file paths,
  sizes and modification times for file-backed datasets, the image bytes for in-memory arrays,
  the labels always; see :func:`dataset_fingerprint`);
* the transforms (size, resize, crop scale, downscale, augmentation policy), the number of views
  and their seeds, the precision (AMP) and the stored dtype;
* :data:`CACHE_VERSION`, bumped whenever extraction itself changes.

Not in the key, because the features do not depend on them: the extraction batch size
(``SELECT.EXTRACT_BATCH``) and the number of loader workers -- each image of view ``v`` is
augmented under its own seed ``(seed, "view", v, index)`` (``rdet.engine.streams``; version 2;
version 1's views depended on both and are never reused).

Entries are written atomically (``rdet.core.atomic``) and read with ``torch.load(weights_only=True)``.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from pathlib import Path
from typing import Any, Callable, Dict, Optional

import numpy as np
import torch

from rdet.core.atomic import torch_save
from rdet.core.errors import CheckpointError, first_line
from rdet.core.safe_pickle import load_torch
from rdet.data.classification import image_files_of, targets_of
from rdet.data.validation import base_items

logger = logging.getLogger(__name__)

CACHE_VERSION = 2  # 2: per-sample view seeds (independent of batch size and workers)


def file_identity(path: str | os.PathLike) -> Dict[str, Any]:
    p = Path(path).resolve()
    st = p.stat()
    return {"path": str(p), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _array_digest(base) -> str:
    """The image arrays an in-memory dataset holds (``data`` / ``images``), else only its type."""
    h = hashlib.sha256(type(base).__name__.encode())
    for attr in ("data", "images"):
        arr = getattr(base, attr, None)
        if arr is not None and hasattr(arr, "__len__") and len(arr) == len(base):
            a = arr.numpy() if isinstance(arr, torch.Tensor) else np.asarray(arr)
            h.update(np.ascontiguousarray(a).tobytes())
            break
    return h.hexdigest()


def dataset_fingerprint(ds) -> str:
    """A digest of what ``ds`` holds: each item's file (path, size, modification time) for
    datasets read from files, else the arrays of its in-memory base datasets and which of their
    items it takes; and its labels."""
    h = hashlib.sha256()
    files = image_files_of(ds)
    if files is not None:
        for f in files:
            st = os.stat(f)
            h.update(f"{f}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    else:
        items = base_items(ds)
        bases: Dict[int, int] = {}
        for base, _ in items:
            if id(base) not in bases:
                bases[id(base)] = len(bases)
                h.update(_array_digest(base).encode())
        h.update(json.dumps([(bases[id(b)], i) for b, i in items]).encode())
    h.update(json.dumps(targets_of(ds)).encode())
    return h.hexdigest()


def cache_key(model: Dict[str, Any], arch: str, cfg, data: Dict[str, Any]) -> Dict[str, Any]:
    """The full description the cache entry is keyed by (its hash names the file)."""
    d = cfg.DATA
    return {"version": CACHE_VERSION, "model": model, "arch": arch, "data": data,
            "transforms": {k: d.get(k) for k in ("TRAIN_SIZE", "TEST_RESIZE", "CROP_SCALE_MIN", "DOWNSCALE",
                                                 "AUGMENT", "AUGMENT_POLICY")},
            "views": int(cfg.SELECT.VIEWS), "view_seed": int(cfg.SEED), "view_streams": "per-sample",
            "amp": cfg.RUNTIME.AMP,
            "dtype": cfg.SELECT.CACHE_DTYPE}


def key_digest(key: Dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()


_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def load_or_extract(cache_dir: Path, label: str, key: Dict[str, Any],
                    extract: Callable[[], Dict[str, Any]]) -> Dict[str, Any]:
    """The cached features for ``key``, or ``extract()``'s (then stored). Returns a dict with
    ``train_views`` (list of (N_train, D)), ``train_center``/``val``/``test`` ((N, D) float32),
    their ``*_labels``, ``extract_time_s`` (of the original extraction), ``hit`` and ``path``."""
    digest = key_digest(key)
    path = Path(cache_dir) / f"{label}-{digest[:20]}.pt"
    entry = _read_entry(path) if path.is_file() else None
    if entry is not None and entry.get("key_digest") == digest:
        logger.info("feature cache hit: %s", path)
        return dict(_as_float(entry), hit=True, path=str(path))
    if entry is not None:
        logger.warning("feature cache %s holds another key; extracting again", path)
    start = time.time()
    feats = extract()
    entry = {k: _store(v, key["dtype"]) for k, v in feats.items()}
    entry.update(key_digest=digest, key_json=json.dumps(key, sort_keys=True), extract_time_s=time.time() - start)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch_save(entry, path)
    return dict(_as_float(entry), hit=False, path=str(path))


def read_features(path: Path) -> Optional[Dict[str, Any]]:
    """A cache entry's features as float32 (the layout :func:`load_or_extract` returns), for
    scoring a finished selection again; ``None`` when the file is gone or unreadable."""
    entry = _read_entry(Path(path)) if Path(path).is_file() else None
    return None if entry is None else _as_float(entry)


def _read_entry(path: Path) -> Optional[Dict[str, Any]]:
    """A cache file's entry; ``None`` (said in one line) when it does not load as one -- truncated,
    garbage, or holding objects ``weights_only`` refuses: it is a cache, so it is extracted again."""
    try:
        entry = load_torch(path)
    except CheckpointError as e:
        logger.warning("feature cache %s is unreadable (%s); extracting again", path, first_line(e, 200))
        return None
    return entry if isinstance(entry, dict) else None


def _store(v, dtype: str):
    if isinstance(v, list):
        return [_store(x, dtype) for x in v]
    return v.to(_DTYPES[dtype]) if v.is_floating_point() else v


def _as_float(entry: Dict[str, Any]) -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    for k, v in entry.items():
        if isinstance(v, list):
            out[k] = [x.float() for x in v]
        elif isinstance(v, torch.Tensor) and v.is_floating_point():
            out[k] = v.float()
        else:
            out[k] = v
    return out
