"""What a ``MODEL.WEIGHTS`` file holds, read the way detectron2's checkpointer will read it, so
that a file detectron2 would load into nothing (a classifier checkpoint, a torchvision state dict,
a truncated file) or that would run code (a crafted ``.pkl``) is refused before any work starts.

Kinds: ``"backbone"`` (a converted backbone or a model-zoo ImageNet file: backbone tensors only)
and ``"detector"`` (a detectron2 model with RPN and box heads, e.g. a ``model_final.pth``).
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, Mapping, Optional

from rdet.core.errors import CheckpointError
from rdet.core.safe_pickle import load_pickle

# detectron2 ResNet names as the converter writes them (``stem.conv1.*``, ``res2.0.*``) and as a
# detectron2 model holds them (``backbone.bottom_up.res2.*`` for FPN, ``backbone.res2.*`` for C4);
# Caffe2 model-zoo names (``conv1_w``, ``res2_0_branch2a_w``), which detectron2 renames on load.
# The timm converter (rdet.convert.timm) writes exact detectron2 names: ``backbone.bottom_up.model.*``
# (ConvNeXt, Swin under FPN) and ``backbone.net.model.*`` (ViT under SimpleFeaturePyramid).
_BACKBONE = re.compile(r"^(backbone\.|stem\.conv1\.|res[2-5]\.\d+\.|conv1_w|res_conv1_bn_|res[2-5]_\d+_branch)")
_HEADS = re.compile(r"^(roi_heads\.box_predictor|proposal_generator|sem_seg_head)\.")  # a trained model
BACKBONE_KEYS = ("arch", "norm", "eps", "method", "source")  # method: pgd, fgsm_rs, free, standard
CONVERT_HINT = "convert it first: python tools/convert_backbone.py INPUT OUTPUT.pkl (or rdet-convert)"


@dataclass
class WeightsInfo:
    kind: str  # "backbone" or "detector"
    backbone: Dict[str, Any] = field(default_factory=dict)  # BACKBONE_KEYS, None where unknown
    iterations: Optional[int] = None  # a detector checkpoint: iterations it was trained for
    schedule: Optional[str] = None  # ... and that run's schedule name, when its record says
    # A converted backbone's whole ``'rdet'`` metadata (mean / std, the timm family): what the
    # config must agree with (rdet.detection.timm_backbones.check_timm_config).
    meta: Dict[str, Any] = field(default_factory=dict)


def _load_torch(path: Path) -> Any:
    """``torch.load(weights_only=True)``: how detectron2 (through fvcore, torch >= 2.6) reads a
    non-.pkl file, so anything this refuses detectron2 would refuse with a long traceback."""
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - truncated zip, garbage bytes: RuntimeError, EOFError, ...
        culprit = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(e))
        if culprit:
            raise CheckpointError(f"{path}: holds Python objects ({culprit[1]}) besides tensors, which detectron2's "
                                  "loader (torch.load with weights_only=True) refuses") from None
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint (truncated or corrupt)") from None


def _tensor_names(obj: Any, pkl: bool) -> Iterable[str]:
    """The names detectron2's ``DetectionCheckpointer._load_file`` would find in ``obj``."""
    if not isinstance(obj, Mapping):
        return []
    if pkl and not ("model" in obj and "__author__" in obj):  # Caffe2 / Detectron1 model-zoo file
        obj = obj.get("blobs", obj)
    else:
        obj = obj.get("model", obj)
    if not isinstance(obj, Mapping):
        return []
    return [k[len("module."):] if k.startswith("module.") else k for k in obj if isinstance(k, str)]


def _detector(weights: Path, obj: Any) -> WeightsInfo:
    """A detector checkpoint, described by the train_det run that wrote it: the run's
    ``result.json`` (when it is about this checkpoint's iterations), else the ``RDET.BACKBONE``
    keys rdet put in the ``config.yaml`` detectron2 wrote beside it. Unknown stays ``None``."""
    import yaml

    it = obj.get("iteration") if isinstance(obj, Mapping) else None
    info = WeightsInfo("detector", dict.fromkeys(BACKBONE_KEYS), it + 1 if isinstance(it, int) else None)
    try:
        rec = json.loads((weights.parent / "result.json").read_text())
    except (OSError, ValueError):
        rec = {}
    if isinstance(rec, dict) and not rec.get("eval_only") and rec.get("iterations") == info.iterations:
        info.schedule = rec.get("schedule")
        if isinstance(rec.get("backbone"), dict):
            info.backbone.update((k, rec["backbone"].get(k)) for k in BACKBONE_KEYS)
            return info
    if info.schedule is None and info.iterations is not None:
        info.schedule = f"{info.iterations} iters"
    try:
        node = yaml.safe_load((weights.parent / "config.yaml").read_text())["RDET"]["BACKBONE"]
        info.backbone.update((k, node.get(k.upper())) for k in BACKBONE_KEYS)
    except (OSError, yaml.YAMLError, KeyError, TypeError, AttributeError):
        pass
    return info


def inspect_weights(weights: str | Path, allow_pickle: bool = False, what: str = "MODEL.WEIGHTS") -> WeightsInfo:
    """Read ``weights`` (restricted unpickling for ``.pkl`` unless ``allow_pickle``) and say what it is.

    Raises :class:`CheckpointError` for a missing, unreadable or unsafe file, and for one in which
    detectron2 would find no backbone tensors; ``what`` names the file's role in the message."""
    path = Path(weights)
    if not path.is_file():
        raise CheckpointError(f"{what} {path}: no such file (convert a backbone with tools/convert_backbone.py)")
    pkl = path.suffix == ".pkl"
    try:
        obj = load_pickle(path, allow_pickle=allow_pickle) if pkl else _load_torch(path)
    except CheckpointError as e:
        raise type(e)(f"{what} {e}") from None
    names = list(_tensor_names(obj, pkl))
    if not any(_BACKBONE.search(n) for n in names):
        found = f"names such as {names[0]!r}" if names else "no tensor names"
        raise CheckpointError(f"{what} {path}: detectron2 would find no backbone tensors in it ({found}); "
                              f"if it is a classifier checkpoint, {CONVERT_HINT}")
    if any(_HEADS.search(n) for n in names):
        return _detector(path, obj)
    meta = obj.get("rdet") if isinstance(obj, Mapping) else None
    meta = meta if isinstance(meta, Mapping) else {}
    return WeightsInfo("backbone", {k: meta.get(k) for k in BACKBONE_KEYS}, meta=dict(meta))
