"""Configs as data: defaults, YAML files with ``_BASE_``, ``KEY VALUE`` overrides."""
from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

from fvcore.common.config import CfgNode

from rdet.config.defaults import get_evaluate_cfg, get_pretrain_cfg, get_transfer_cfg
from rdet.core.errors import ConfigError

# rdet's configs ship inside the package (rdet/configs/); a checkout's top-level configs/ links there
from pathlib import Path as _Path

CONFIG_DIR = _Path(__file__).resolve().parents[1] / "configs"

__all__ = ["CfgNode", "get_transfer_cfg", "get_pretrain_cfg", "get_evaluate_cfg", "merge_config", "build_config",
           "CONFIG_DIR"]


def merge_config(cfg: CfgNode, config_file: Optional[str] = None, opts: Sequence[str] = ()) -> CfgNode:
    """Merge a YAML file then ``KEY VALUE`` pairs into ``cfg``; errors become :class:`ConfigError`."""
    import os

    if config_file:
        if not os.path.isfile(config_file):
            raise ConfigError(f"{config_file}: no such config file")
        import yaml

        try:
            cfg.merge_from_file(config_file)
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f":{mark.line + 1}" if mark is not None else ""
            raise ConfigError(f"{config_file}{where}: malformed YAML ({getattr(e, 'problem', None) or e})") from None
        except (KeyError, ValueError, AssertionError, TypeError, AttributeError) as e:
            raise ConfigError(f"{config_file}: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    if opts:
        if len(opts) % 2:
            raise ConfigError(f"overrides come in KEY VALUE pairs, got {len(opts)} items: {' '.join(opts)}")
        try:
            cfg.merge_from_list(list(opts))
        except (KeyError, ValueError, AssertionError, TypeError) as e:
            raise ConfigError(f"bad override: {e}") from None
    return cfg


def build_config(cfg: CfgNode, config_file: Optional[str] = None, flags: Mapping[str, Any] = None,
                 opts: Sequence[str] = ()) -> CfgNode:
    """The one way rdet's CLIs build a config, in detectron2's order: defaults (``cfg``) -> YAML
    file -> command-line flags (``{"KEY": value}``, ``None`` values skipped) -> ``KEY VALUE``."""
    merge_config(cfg, config_file)
    for key, value in (flags or {}).items():
        if value is not None:
            merge_config(cfg, None, [key, value if isinstance(value, str) else repr(value)])
    return merge_config(cfg, None, opts)
