"""What every converter writes and how: the weights file (detectron2's ``.pkl`` or a ``.pth``) with
its config fragment, written atomically and removed again when the converter's own check of the
written file fails, so that a converted file on disk is always a checked one. Shared by the
ResNet converter (:mod:`rdet.convert.detectron2`) and the timm one (:mod:`rdet.convert.timm`)."""
from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Optional

import torch

from rdet.core.atomic import atomic_path, torch_save
from rdet.core.errors import CheckpointError, RdetError

MAX_REL_ERROR = 1e-4


@dataclass
class ConversionResult:
    weights: Path
    config: Path
    meta: Dict[str, Any]
    max_rel_error: Optional[float]


def d2_settings(meta: Dict[str, Any], weights: Path, model: Dict[str, Any]) -> Dict[str, Any]:
    """The detectron2 config keys (nested dict) every converted file gets, the weights and the
    pixel statistics of ``meta`` (RGB, 0-255, as detectron2 wants them), plus ``model``: the
    backbone's own ``MODEL`` keys."""
    return {
        "VERSION": 2,
        "INPUT": {"FORMAT": "RGB"},
        "MODEL": {
            "WEIGHTS": str(weights),
            "PIXEL_MEAN": [round(255.0 * m, 4) for m in meta["mean"]],
            "PIXEL_STD": [round(255.0 * s, 4) for s in meta["std"]],
            **model,
        },
    }


def check_output(output: Path) -> None:
    if output.suffix not in (".pkl", ".pth"):
        raise RdetError(f"{output}: output must end in .pkl (detectron2 format) or .pth")
    if not output.parent.is_dir():
        raise RdetError(f"{output.parent}: output directory does not exist")


def write_checked(output: Path, config: Path, d2_sd: Dict[str, torch.Tensor], meta: Dict[str, Any], yaml_text: str,
                  check: Optional[Callable[[], float]], src: str, reference: str,
                  matching_heuristics: bool = True) -> Optional[float]:
    """Write the weights file (``.pkl`` in detectron2's pickle format, or ``.pth``) and its config,
    then ``check()`` (the max relative feature error against ``reference``'s network, when given).
    A check that fails, or raises, removes both files: a converted file is always a checked one."""
    payload = {"__author__": "rdet", "matching_heuristics": matching_heuristics, "rdet": meta}
    if output.suffix == ".pkl":
        payload["model"] = {k: v.detach().cpu().numpy() for k, v in d2_sd.items()}
        with atomic_path(output) as tmp, open(tmp, "wb") as f:
            pickle.dump(payload, f, protocol=pickle.HIGHEST_PROTOCOL)
    else:
        payload["model"] = {k: v.detach().cpu().contiguous() for k, v in d2_sd.items()}
        torch_save(payload, output)
    try:
        with atomic_path(config) as tmp:
            tmp.write_text(yaml_text)
        err = None if check is None else check()
    except BaseException:
        output.unlink(missing_ok=True)
        config.unlink(missing_ok=True)
        raise
    if err is not None and not err <= MAX_REL_ERROR:
        output.unlink(missing_ok=True)
        config.unlink(missing_ok=True)
        raise CheckpointError(f"{src}: conversion check failed: detectron2 and {reference} features differ by "
                              f"{err:.2e} (relative; limit {MAX_REL_ERROR:g}); nothing written")
    return err
