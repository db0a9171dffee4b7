"""Where datasets live: ``$RDET_DATASETS`` if set, else ``./datasets`` (like detectron2's
``$DETECTRON2_DATASETS``). Every loader in ``rdet.data`` (downloaded sets and offline ones) asks here."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional


def data_root(root: Optional[str | os.PathLike] = None) -> Path:
    """``root`` when given, else ``$RDET_DATASETS``, else ``./datasets`` (``~`` expanded)."""
    return Path(root or os.environ.get("RDET_DATASETS", "datasets")).expanduser()


def data_root_from_cfg(cfg) -> Path:
    """The root for a config: ``cfg.DATA.ROOT``, unless it is the default ``"datasets"``, in
    which case ``$RDET_DATASETS`` (when set) wins."""
    root = cfg.DATA.ROOT
    return data_root(root if root != "datasets" else None)
