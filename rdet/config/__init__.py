"""Configs as data: defaults, YAML files with ``_BASE_``, ``KEY VALUE`` overrides."""
from __future__ import annotations

from typing import Optional, Sequence

from fvcore.common.config import CfgNode

from rdet.config.defaults import get_evaluate_cfg, get_pretrain_cfg, get_transfer_cfg
from rdet.errors import ConfigError

# rdet's configs ship inside the package (rdet/configs/); a checkout's top-level configs/ links there
from pathlib import Path as _Path

CONFIG_DIR = _Path(__file__).resolve().parents[1] / "configs"

__all__ = ["CfgNode", "get_transfer_cfg", "get_pretrain_cfg", "get_evaluate_cfg", "merge_config", "CONFIG_DIR"]


def merge_config(cfg: CfgNode, config_file: Optional[str] = None, opts: Sequence[str] = ()) -> CfgNode:
    """Merge a YAML file then ``KEY VALUE`` pairs into ``cfg``; errors become :class:`ConfigError`."""
    import os

    if config_file:
        if not os.path.isfile(config_file):
            raise ConfigError(f"{config_file}: no such config file")
        try:
            cfg.merge_from_file(config_file)
        except (KeyError, ValueError, AssertionError, TypeError) as e:
            raise ConfigError(f"{config_file}: {e}") from None
    if opts:
        if len(opts) % 2:
            raise ConfigError(f"overrides come in KEY VALUE pairs, got {len(opts)} items: {' '.join(opts)}")
        try:
            cfg.merge_from_list(list(opts))
        except (KeyError, ValueError, AssertionError, TypeError) as e:
            raise ConfigError(f"bad override: {e}") from None
    return cfg
