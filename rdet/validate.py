"""Checks every CLI runs on its inputs before any work starts, each failing with one line.

A mistyped weights path or a read-only output folder should cost a second, not a pretraining run
that fails at its first checkpoint. Nothing here creates, changes or leaves a file: the output
folder is created by the run itself, once every input has passed.
"""
from __future__ import annotations

import difflib
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Dict, Iterable, Optional, Tuple

from rdet.core.errors import CheckpointError, ConfigError

# (key, lower bound, upper bound, lower bound excluded, upper bound excluded) for the config keys
# rdet's CLIs share; check_known_ranges applies those a config has. Bounds are inclusive unless marked.
RANGES: Tuple[Tuple[str, Optional[float], Optional[float], bool, bool], ...] = (
    ("SOLVER.EPOCHS", 1, None, False, False),
    ("SOLVER.BATCH_SIZE", 1, None, False, False),
    ("SOLVER.BASE_LR", 0, None, True, False),
    ("SOLVER.WEIGHT_DECAY", 0, None, False, False),
    ("SOLVER.MOMENTUM", 0, 1, False, True),
    ("SOLVER.GAMMA", 0, None, True, False),
    ("SOLVER.LR_STEP_EPOCHS", 1, None, False, False),
    ("DATA.TRAIN_SIZE", 1, None, False, False),
    ("DATA.TEST_RESIZE", 1, None, False, False),
    ("DATA.NUM_WORKERS", 0, None, False, False),
    ("DATA.MAX_TRAIN", 0, None, False, False),
    ("DATA.MAX_TEST", 0, None, False, False),
    ("ADV.EPS", 0, None, False, False),
    ("ADV.STEPS", 1, None, False, False),
    ("ADV.FREE_REPLAYS", 1, None, False, False),
    ("ADV.FGSM_STEP_FACTOR", 0, None, True, False),
    ("ADV.GUARD_SAMPLES", 1, None, False, False),
    ("ADV.GUARD_STEPS", 1, None, False, False),
    ("ADV.GUARD_MARGIN", 0, None, False, False),
    ("ATTACK.EPS", 0, None, False, False),
    ("ATTACK.STEPS", 1, None, False, False),
    ("ATTACK.RESTARTS", 1, None, False, False),
    ("TRANSFER.CACHE_VIEWS", 1, None, False, False),
    ("TRANSFER.EVAL_EVERY", 0, None, False, False),
    ("EVAL.FIT_HEAD_VIEWS", 1, None, False, False),
)


def check_output_dir(path: str | os.PathLike) -> Path:
    """``path`` is a folder rdet can write in, or one it can create: its nearest existing ancestor
    is a folder where a (nameless, immediately removed) temporary file can be created."""
    out = Path(path).expanduser()
    probe = out.absolute()
    while not os.path.lexists(probe) and probe.parent != probe:
        probe = probe.parent
    if not probe.is_dir():
        where = "exists and is not a folder" if probe == out.absolute() else f"cannot be created: {probe} is not a folder"
        raise ConfigError(f"output folder {out} {where}")
    try:
        with tempfile.TemporaryFile(dir=probe):
            pass
    except OSError as e:
        verb = "is not writable" if probe == out.absolute() else f"cannot be created in {probe}"
        raise ConfigError(f"output folder {out} {verb} ({e.strerror})") from None
    return out


def check_weights_arg(value: str, flag: str = "--weights") -> str:
    """``value`` is an existing readable file or a catalog name; returns ``"file"`` or ``"catalog"``.

    A file path wins over a catalog name of the same spelling (as in
    :func:`rdet.backbones.checkpoint.resolve`). Close catalog names are suggested for a typo.
    """
    from rdet.backbones.catalog import CATALOG, get_entry

    if not value:
        raise CheckpointError(f"{flag}: no weights given (a catalog name or a checkpoint file)")
    p = Path(value).expanduser()
    if p.exists():
        if not p.is_file():
            raise CheckpointError(f"{flag} {value}: is a folder, not a weights file")
        if not os.access(p, os.R_OK):
            raise CheckpointError(f"{flag} {value}: file is not readable")
        return "file"
    if get_entry(value) is not None:
        return "catalog"
    close = difflib.get_close_matches(value, list(CATALOG), n=3, cutoff=0.75)
    hint = f"; did you mean {' or '.join(close)}?" if close else " (python -m rdet backbones catalog lists the names)"
    raise CheckpointError(f"{flag} {value}: no such file and not a catalog model{hint}")


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


def _lookup(cfg, key: str) -> Any:
    node = cfg
    for part in key.split("."):
        node = node[part]
    return node


def check_range(cfg, key: str, lo: Optional[float] = None, hi: Optional[float] = None,
                lo_excluded: bool = False, hi_excluded: bool = False) -> None:
    """``cfg[key]`` (or each item of a list value) is a number in ``[lo, hi]`` (``(lo`` with
    ``lo_excluded``, ``hi)`` with ``hi_excluded``); ``None`` leaves a side open."""
    value = _lookup(cfg, key)
    if lo is None and hi is None:
        return
    if hi is None:
        rule = f"{'>' if lo_excluded else '>='} {lo:g}"
    elif lo is None:
        rule = f"{'<' if hi_excluded else '<='} {hi:g}"
    else:
        rule = f"in {'(' if lo_excluded else '['}{lo:g}, {hi:g}{')' if hi_excluded else ']'}"
    many = isinstance(value, (list, tuple))
    for v in value if many else [value]:
        ok = isinstance(v, (int, float)) and not isinstance(v, bool) and not math.isnan(v)
        ok = ok and (lo is None or (v > lo if lo_excluded else v >= lo)) and (hi is None or (v < hi if hi_excluded else v <= hi))
        if not ok:
            raise ConfigError(f"{key}{' items' if many else ''} must be {rule}, not {v!r}")


def check_training_inputs(cfg) -> None:
    """What rdet.pretrain and rdet.classify check before any work: value ranges, MODEL.WEIGHTS
    (a readable file or a catalog name) and a writable OUTPUT_DIR."""
    check_known_ranges(cfg)
    if cfg.MODEL.WEIGHTS:
        check_weights_arg(cfg.MODEL.WEIGHTS, "MODEL.WEIGHTS")
    check_output_dir(cfg.OUTPUT_DIR)


def check_known_ranges(cfg, skip: Iterable[str] = ()) -> None:
    """:func:`check_range` for every key of :data:`RANGES` that ``cfg`` has."""
    for key, lo, hi, lo_excluded, hi_excluded in RANGES:
        if key in skip:
            continue
        try:
            _lookup(cfg, key)
        except KeyError:
            continue
        check_range(cfg, key, lo, hi, lo_excluded, hi_excluded)
