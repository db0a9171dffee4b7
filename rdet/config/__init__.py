"""Configs as data: defaults (:mod:`rdet.config.defaults`), every key's rule
(:mod:`rdet.config.schema`), YAML files with ``_BASE_`` and ``KEY VALUE`` overrides merged here.

An integer given for a float key (``ADV.EPS 1``, ``EPS: 1`` in a file) is taken as that float,
as a user means it; yacs alone refuses it as a type mismatch."""
from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

from fvcore.common.config import CfgNode

from rdet.config.defaults import get_evaluate_cfg, get_pretrain_cfg, get_select_cfg, get_transfer_cfg
from rdet.config.files import check_config_file
from rdet.core.errors import ConfigError, first_line

# rdet's configs ship inside the package (rdet/configs/); a checkout's top-level configs/ links there
from pathlib import Path as _Path

CONFIG_DIR = _Path(__file__).resolve().parents[1] / "configs"

__all__ = ["CfgNode", "get_transfer_cfg", "get_pretrain_cfg", "get_evaluate_cfg", "get_select_cfg", "merge_config",
           "build_config", "check_config_file", "CONFIG_DIR"]


def _floats_where_defaults_are(data, defaults):
    """``data`` (a parsed YAML mapping) with ints turned into floats where ``defaults`` holds a
    float (or a list of floats)."""
    if isinstance(data, dict):
        return {k: _floats_where_defaults_are(v, defaults.get(k) if hasattr(defaults, "get") else None)
                for k, v in data.items()}
    if isinstance(defaults, float) and isinstance(data, int) and not isinstance(data, bool):
        return float(data)
    if isinstance(defaults, (list, tuple)) and defaults and all(isinstance(d, float) for d in defaults) \
            and isinstance(data, (list, tuple)):
        return type(data)(float(d) if isinstance(d, int) and not isinstance(d, bool) else d for d in data)
    return data


def _lookup(cfg, key: str):
    node = cfg
    for part in key.split("."):
        if not hasattr(node, "get") or part not in node:
            return None
        node = node[part]
    return node


def _coerce_opts(cfg, opts: Sequence[str]):
    """``KEY VALUE`` pairs with an integer literal given for a float key written as that float."""
    import ast

    out = list(opts)
    for i in range(0, len(out) - 1, 2):
        default = _lookup(cfg, out[i])
        try:
            value = ast.literal_eval(out[i + 1])
        except (ValueError, SyntaxError):
            continue
        fixed = _floats_where_defaults_are(value, default)
        if fixed is not value:
            out[i + 1] = repr(fixed)
    return out


def merge_config(cfg: CfgNode, config_file: Optional[str] = None, opts: Sequence[str] = ()) -> CfgNode:
    """Merge a YAML file then ``KEY VALUE`` pairs into ``cfg``; errors become :class:`ConfigError`."""
    import os

    if config_file:
        if not os.path.isfile(config_file):
            raise ConfigError(f"{config_file}: no such config file")
        import yaml

        try:
            data = _floats_where_defaults_are(cfg.load_yaml_with_base(config_file) or {}, cfg)
            cfg.merge_from_other_cfg(CfgNode(data))
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f":{mark.line + 1}" if mark is not None else ""
            raise ConfigError(f"{config_file}{where}: malformed YAML ({getattr(e, 'problem', None) or e})") from None
        except (KeyError, ValueError, AssertionError, TypeError, AttributeError) as e:
            raise ConfigError(f"{config_file}: {first_line(e)}") from None
    if opts:
        if len(opts) % 2:
            raise ConfigError(f"overrides come in KEY VALUE pairs, got {len(opts)} items: {' '.join(opts)}")
        try:
            cfg.merge_from_list(_coerce_opts(cfg, opts))
        except (KeyError, ValueError, AssertionError, TypeError) as e:
            raise ConfigError(f"bad override: {e}") from None
    return cfg


def build_config(cfg: CfgNode, config_file: Optional[str] = None, flags: Mapping[str, Any] = None,
                 opts: Sequence[str] = ()) -> CfgNode:
    """The one way rdet's CLIs and study kinds build a config, in detectron2's order: defaults
    (``cfg``) -> YAML file -> command-line flags (``{"KEY": value}``, ``None`` values skipped) ->
    ``KEY VALUE`` -> every key's rule (:func:`rdet.config.schema.check_cfg`), so a bad value is the
    same one line wherever it is written."""
    from rdet.config.schema import check_cfg

    merge_config(cfg, config_file)
    for key, value in (flags or {}).items():
        if value is not None:
            merge_config(cfg, None, [key, value if isinstance(value, str) else repr(value)])
    merge_config(cfg, None, opts)
    check_cfg(cfg)
    return cfg
