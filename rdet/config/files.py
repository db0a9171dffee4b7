"""Config files checked before they are merged: each ``_BASE_`` exists, parses as a YAML mapping,
does not loop; malformed YAML is one line naming ``file:line``."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, Tuple

from rdet.core.errors import ConfigError


def _yaml_error(path: Path, e: Exception) -> ConfigError:
    mark = getattr(e, "problem_mark", None)
    where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
    return ConfigError(f"{where}: malformed YAML ({getattr(e, 'problem', None) or type(e).__name__})")


def _check_yaml(path: Path, seen: Tuple[Path, ...]) -> None:
    import yaml

    if not path.is_file():
        raise ConfigError(f"{path}: no such config file" + (f" (the _BASE_ of {seen[-1]})" if seen else ""))
    if path.resolve() in seen:
        raise ConfigError(f"{path}: _BASE_ chain loops back to itself")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise _yaml_error(path, e) from None
    except (UnicodeDecodeError, OSError) as e:
        raise ConfigError(f"{path}: cannot be read as a text file ({type(e).__name__})") from None
    if data is None:
        return
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config file holds KEY: value pairs, not a {type(data).__name__}")
    bases = data.get("_BASE_") or []
    for base in [bases] if isinstance(bases, str) else bases:
        base = str(base)
        if base.startswith(("http://", "https://")):
            continue  # fvcore fetches these itself
        base_path = Path(os.path.expanduser(base))
        _check_yaml(base_path if base_path.is_absolute() else path.parent / base_path, seen + (path.resolve(),))


def check_config_file(path: str | os.PathLike) -> Dict[str, Any]:
    """``path`` and its ``_BASE_`` files exist and parse as YAML mappings; returns the merged
    mapping (fvcore's ``_BASE_`` rules). Malformed YAML is reported as ``file:line``."""
    from fvcore.common.config import CfgNode

    _check_yaml(Path(path), ())
    return CfgNode.load_yaml_with_base(str(path)) or {}
