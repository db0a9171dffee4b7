"""What every task checks on its inputs before any work starts, each failing with one line.

A mistyped weights path or a read-only output folder should cost a second, not a pretraining run
that fails at its first checkpoint. Nothing here creates, changes or leaves a file: the output
folder is created by the run itself, once every input has passed. Value ranges and choices of
config keys: :mod:`rdet.config.schema`.
"""
from __future__ import annotations

import difflib
import os
import tempfile
from pathlib import Path

from rdet.config.schema import check_cfg
from rdet.core.errors import CheckpointError, ConfigError


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


def check_training_inputs(cfg) -> None:
    """What the pretraining and transfer tasks check before any work: every key's rule, the arch
    (known; MODEL.BN only on BatchNorm archs), MODEL.WEIGHTS (a readable file or a catalog name)
    and a writable OUTPUT_DIR."""
    check_cfg(cfg)
    from rdet.backbones.registry import check_bn_policy

    check_bn_policy(cfg.MODEL.ARCH, cfg.MODEL.BN)  # LayerNorm archs: no BatchNorm policy to apply
    if cfg.MODEL.WEIGHTS:
        check_weights_arg(cfg.MODEL.WEIGHTS, "MODEL.WEIGHTS")
    check_output_dir(cfg.OUTPUT_DIR)
