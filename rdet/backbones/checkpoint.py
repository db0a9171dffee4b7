"""Reading any classifier checkpoint rdet meets into a clean torchvision state_dict.

Accepted layouts (all read with ``torch.load(weights_only=True)``):

* the robustness library's (the paper's released models): ``{'model': sd, 'epoch': ...}`` with
  ``module.normalizer.*``, ``module.model.*``, a duplicate ``module.attacker.model.*`` and
  ``module.attacker.normalize.*``; non-ResNet archs nest one more ``model.``;
* ``{'state_dict': sd}`` (older scripts), optionally DataParallel-prefixed (``module.``);
* a plain torchvision state_dict;
* rdet's own checkpoints ``{'model': torchvision sd, 'rdet': {arch, norm, eps, ...}, ...}``;

and for the timm families (ConvNeXt, Swin, ViT), with timm's tensor names inside:

* RobustBench's model objects, ``nn.Sequential(normalize=ImageNormalizer(mean, std), model=<timm
  model>)``: ``normalize.mean``/``normalize.std`` (``(1, 3, 1, 1)``) and ``model.*``; the files
  RobustBench downloads hold the bare timm state dict (optionally ``module.``-prefixed or under
  ``'state_dict'``) and RobustBench adds the normaliser when it builds the model;
* Singh et al.'s (github nmndeep/revisiting-at): ``model.state_dict()`` of DDP over their
  attack wrapper over ``normalize_model(timm model)``, i.e. ``module.base_model.normalize.*`` and
  ``module.base_model.model.*`` (or ``module.base_model.*`` without normaliser); their resumable
  files put it under ``'model_state_dict'``;
* Liu et al.'s ARES (github thu-ml/ares): a bare timm state dict (ARES adds the normaliser);
* plain timm state dicts, including timm < 0.9 Swin files (downsampling at the end of each
  stage, ``head.weight``, persistent ``relative_position_index``/``attn_mask`` buffers), which
  are renamed to today's layout.

Only the classifier's own tensors come out; normaliser and attacker copies are dropped (the
normaliser's mean/std go into the metadata, and :func:`load_weights` puts them into the model's
input normalisation).
"""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Tuple

import torch

from rdet.backbones.registry import get_spec, list_backbones
from rdet.backbones.skip_init import skip_parameter_init
from rdet.core.errors import CheckpointError
from rdet.core.safe_pickle import ALLOW_PICKLE_FLAG, load_torch  # noqa: F401 (ALLOW_PICKLE_FLAG: re-exported)

_RELEASE_NAME = re.compile(r"^(?P<arch>.+)_(?P<norm>l2|linf)_eps(?P<eps>[0-9.]+)$")


@dataclass
class LoadedCheckpoint:
    state_dict: Dict[str, torch.Tensor]  # torchvision key names
    arch: str
    meta: Dict[str, Any] = field(default_factory=dict)  # arch, norm, eps, format, source, ...


read_file = load_torch  # rdet.core.safe_pickle: the one torch.load of a file rdet did not write


def _is_state_dict(obj: Any) -> bool:
    return isinstance(obj, Mapping) and len(obj) > 0 and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())


def _strip(sd: Dict[str, torch.Tensor], prefix: str) -> Dict[str, torch.Tensor]:
    return {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}


# Files that hold an EMA copy beside the trained weights: (plain key, EMA key, format).
_EMA_PAIRS = (("model_state_dict", "state_dict_ema", "singh2023"),  # Singh et al.'s full_model_*.pth
              ("state_dict", "state_dict_ema", "state_dict"))  # timm's train.py checkpoints
VARIANTS = ("plain", "ema")


def _pick_variant(obj: Any, variant: str) -> Optional[Tuple[Dict[str, torch.Tensor], Dict[str, Any]]]:
    """The plain or EMA weights of a file holding both; ``None`` for a file without an EMA copy. Both
    present and ``variant`` unset is refused: the two are different models, and which one a release's
    numbers come from is the user's to say (``MODEL.WEIGHTS_VARIANT``)."""
    if not isinstance(obj, Mapping):
        return None
    for plain, ema, fmt in _EMA_PAIRS:
        if _is_state_dict(obj.get(plain)) and _is_state_dict(obj.get(ema)):
            if not variant:
                raise CheckpointError(f"holds both plain ('{plain}') and EMA ('{ema}') weights: say which with "
                                      f"MODEL.WEIGHTS_VARIANT plain|ema (--weights-variant)")
            key = ema if variant == "ema" else plain
            return dict(obj[key]), {"format": fmt, "weights_variant": variant, "weights_key": key}
    if variant == "ema":
        raise CheckpointError("MODEL.WEIGHTS_VARIANT ema, but the file holds no EMA weights ('state_dict_ema')")
    return None


def to_torchvision(obj: Any, variant: str = "") -> Tuple[Dict[str, torch.Tensor], Dict[str, Any]]:
    """Extract ``(torchvision state_dict, metadata)`` from a loaded checkpoint object; ``variant``
    (``plain`` | ``ema``) picks from a file that holds both."""
    meta: Dict[str, Any] = {}
    picked = _pick_variant(obj, variant)
    if picked is not None:
        obj, meta = picked
    if picked is not None:
        sd = obj
    elif isinstance(obj, Mapping) and isinstance(obj.get("rdet"), Mapping) and _is_state_dict(obj.get("model")):
        meta.update(obj["rdet"], format="rdet")
        return dict(obj["model"]), meta
    elif isinstance(obj, Mapping) and _is_state_dict(obj.get("model")):
        sd, meta["format"] = dict(obj["model"]), "robustness"
        if isinstance(obj.get("epoch"), int):
            meta["epoch"] = obj["epoch"]
    elif isinstance(obj, Mapping) and _is_state_dict(obj.get("state_dict")):
        sd, meta["format"] = dict(obj["state_dict"]), "state_dict"
    elif isinstance(obj, Mapping) and _is_state_dict(obj.get("model_state_dict")):  # Singh et al.'s full_model_*.pth
        sd, meta["format"] = dict(obj["model_state_dict"]), "singh2023"
    elif _is_state_dict(obj):
        sd, meta["format"] = dict(obj), "torchvision"
    else:
        raise CheckpointError("no weights found: expected a state_dict, or a dict with a 'model' or "
                              "'state_dict' entry holding one")
    while sd and all(k.startswith("module.") for k in sd):  # DataParallel / DDP
        sd = _strip(sd, "module.")
    if sd and all(k.startswith("base_model.") for k in sd):  # Singh et al.'s attack wrapper
        sd, meta["format"] = _strip(sd, "base_model."), "singh2023"
    if "normalize.mean" in sd and "normalize.std" in sd:  # RobustBench's / Singh's ImageNormalizer
        meta["mean"] = [float(x) for x in sd["normalize.mean"].flatten()]
        meta["std"] = [float(x) for x in sd["normalize.std"].flatten()]
        if meta["format"] != "singh2023":
            meta["format"] = "robustbench"
        sd = _strip(sd, "model.")
        if not sd:
            raise CheckpointError("normalize.* without 'model.*' weights")
        return _timm_today(sd), meta
    if any(k.startswith(("model.", "normalizer.", "attacker.")) for k in sd):
        # robustness AttackerModel: keep the classifier, note the normaliser, drop the attacker.
        if "normalizer.new_mean" in sd:
            meta["mean"] = [float(x) for x in sd["normalizer.new_mean"].flatten()]
            meta["std"] = [float(x) for x in sd["normalizer.new_std"].flatten()]
        sd = _strip(sd, "model.")
        if sd and all(k.startswith("model.") for k in sd):  # torchvision archs wrapped once more
            sd = _strip(sd, "model.")
        if not sd:
            raise CheckpointError("robustness-layout checkpoint without 'model.*' weights")
    return _timm_today(sd), meta


_OLD_SWIN_DOWNSAMPLE = re.compile(r"^layers\.(\d+)\.downsample\.")


def _timm_today(sd: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """timm < 0.9 Swin names -> today's: the patch merging that ended stage i starts stage i + 1, the
    classifier moved into ``head.fc``, and the index/mask buffers (rebuilt by the model, no longer
    saved) are dropped. Anything else passes unchanged."""
    if not any(k.startswith("layers.0.blocks.") for k in sd):
        return sd
    out = {k: v for k, v in sd.items() if not k.endswith(("relative_position_index", "attn_mask"))}
    if "layers.0.downsample.reduction.weight" in out:
        def rename(k: str) -> str:
            k = _OLD_SWIN_DOWNSAMPLE.sub(lambda m: f"layers.{int(m.group(1)) + 1}.downsample.", k)
            return "head.fc." + k[len("head."):] if k.startswith("head.") and not k.startswith("head.fc.") else k

        out = {rename(k): v for k, v in out.items()}
    return out


def sniff_family(sd: Mapping[str, torch.Tensor]) -> Optional[str]:
    """The timm family whose tensor names ``sd`` has (convnext, swin, vit), else ``None``
    (torchvision's CNNs are told apart by the full comparison)."""
    if any(k.startswith("stages.0.blocks.0.conv_dw.") for k in sd):
        return "convnext"
    if any(k.startswith("layers.0.blocks.0.attn.") for k in sd):
        return "swin"
    if "cls_token" in sd and any(k.startswith("blocks.0.attn.qkv.") for k in sd):
        return "vit"
    return None


@functools.lru_cache(maxsize=None)
def _signature(arch: str) -> Tuple[frozenset, str]:
    """(body key/shape pairs, head prefix) of a registry arch, built on the meta device without
    its initialisers (which run as Python kernels there)."""
    spec = get_spec(arch)
    with torch.device("meta"), skip_parameter_init():
        net = spec.builder(1000)
    head = spec.classifier + "."
    body = frozenset((k, tuple(v.shape)) for k, v in net.state_dict().items()
                     if not k.startswith(head) and not k.endswith("num_batches_tracked"))
    return body, head


def _body_signature(sd: Mapping[str, torch.Tensor], head: str) -> frozenset:
    return frozenset((k, tuple(v.shape)) for k, v in sd.items()
                     if not k.startswith(head) and not k.endswith("num_batches_tracked"))


def matches(sd: Mapping[str, torch.Tensor], arch: str) -> bool:
    body, head = _signature(arch)
    return _body_signature(sd, head) == body


def sniff_arch(sd: Mapping[str, torch.Tensor]) -> Optional[str]:
    """The registry arch whose every non-head tensor name and shape matches ``sd``, if any. Only
    the archs of the family the tensor names point to are compared (building every signature
    once costs seconds)."""
    family = sniff_family(sd)
    candidates = list_backbones(family) if family else [a for a in list_backbones() if get_spec(a).timm_name is None]
    found = [a for a in candidates if matches(sd, a)]
    return found[0] if len(found) == 1 else None


def load_checkpoint(path: str | Path, arch: Optional[str] = None, allow_pickle: bool = False, input_norm: str = "",
                    variant: str = "") -> LoadedCheckpoint:
    """Read ``path`` and return its torchvision weights with the architecture they belong to.

    ``arch``: the architecture the caller expects; a checkpoint of another one is refused. Without
    it the architecture is sniffed from the tensor names and shapes. ``input_norm``
    (``MODEL.INPUT_NORM``) and ``variant`` (``MODEL.WEIGHTS_VARIANT``) say what the file may not:
    the input normalisation its weights expect, and which of its plain / EMA copies to take. The
    metadata always names the normalisation and where it came from (``input_norm``)."""
    from rdet.backbones.catalog import get_entry
    from rdet.backbones.preprocessing import resolve_input_norm

    obj = read_file(path, allow_pickle=allow_pickle)
    try:
        sd, meta = to_torchvision(obj, variant)
    except CheckpointError as e:
        raise CheckpointError(f"{path}: {e}") from None
    if arch is not None:
        get_spec(arch)  # unknown names fail here, with the list of choices
        if not matches(sd, arch):
            sniffed, family = sniff_arch(sd), sniff_family(sd)  # sniffing costs ~1 s: only to say what it is
            what = (f"a {sniffed} checkpoint" if sniffed else
                    f"a {family}-family checkpoint of no registered size" if family else
                    "not a checkpoint of any registered architecture")
            raise CheckpointError(f"{path}: is {what}, not {arch} (check --arch)")
    else:
        arch = sniff_arch(sd)
        if arch is None:
            raise CheckpointError(f"{path}: weights match no registered architecture "
                                  f"({', '.join(list_backbones())}); pass --arch to see the mismatch")
    _fill_num_batches_tracked(sd, arch)
    meta.setdefault("arch", arch)
    meta["source"] = str(path)
    release = _RELEASE_NAME.match(Path(path).stem)
    entry = get_entry(Path(path).stem)
    if entry is not None and entry.arch != arch:
        entry = None  # a catalog name on another arch's weights says nothing about these
    if entry is not None:
        meta.setdefault("norm", entry.norm)
        meta.setdefault("eps", entry.eps)
        meta.setdefault("catalog", entry.name)
    elif release:
        meta.setdefault("norm", release["norm"])
        scale = 255.0 if release["norm"] == "linf" else 1.0
        meta.setdefault("eps", float(release["eps"].rstrip(".")) / scale)
    resolve_input_norm(meta, arch, entry, input_norm, str(path))
    return LoadedCheckpoint(sd, arch, meta)


def _fill_num_batches_tracked(sd: Dict[str, torch.Tensor], arch: str) -> None:
    """Old checkpoints predate BatchNorm's ``num_batches_tracked`` buffer; it is never used when
    momentum is set, so a zero counter is exact."""
    for k in [k[: -len("running_mean")] for k in sd if k.endswith("running_mean")]:
        sd.setdefault(k + "num_batches_tracked", torch.tensor(0, dtype=torch.long))


def resolve(weights: str, allow_download: bool = True) -> Path:
    """A weights argument as a path: an existing file, or a catalog name (downloaded if needed)."""
    from rdet.backbones.catalog import download, get_entry

    p = Path(weights).expanduser()
    if p.exists() or get_entry(weights) is None:
        return p  # read_file reports a missing path
    if not allow_download:
        raise CheckpointError(f"{weights}: catalog model not downloaded")
    return download(weights)


def load_weights(model, weights: str | Path, allow_pickle: bool = False, input_norm: str = "",
                 variant: str = "") -> LoadedCheckpoint:
    """Load ``weights`` (file or catalog name) into an :class:`rdet.backbones.Classifier`.

    The body is loaded strictly. The head is loaded too when its shape fits ``model``; otherwise
    the model keeps its fresh head (transfer to a new label set). The input normalisation the
    weights were trained with (:func:`load_checkpoint`) replaces the spec's default, so the model
    computes what the release computes on [0, 1] input."""
    loaded = load_checkpoint(resolve(str(weights)), arch=model.spec.name, allow_pickle=allow_pickle,
                             input_norm=input_norm, variant=variant)
    head_prefix = model.spec.classifier + "."
    ckpt_head = {k[len(head_prefix):]: v for k, v in loaded.state_dict.items() if k.startswith(head_prefix)}
    own_head = model.head.state_dict()
    with_head = set(ckpt_head) == set(own_head) and all(
        ckpt_head[k].shape == own_head[k].shape for k in own_head)
    apply_checkpoint(model, loaded, with_head)
    loaded.meta["head_loaded"] = with_head
    return loaded


def apply_checkpoint(model, loaded: LoadedCheckpoint, with_head: bool) -> None:
    """Load ``loaded``'s weights (the head when ``with_head``) and its input normalisation into
    ``model``: the two always travel together."""
    model.load_torchvision_state_dict(loaded.state_dict, with_head=with_head)
    model.normalize.set_stats(loaded.meta["mean"], loaded.meta["std"])


def classifier_checkpoint(model, meta: Dict[str, Any]) -> Dict[str, Any]:
    """rdet's checkpoint of a ``Classifier`` (unwrapped from DDP): torchvision-named weights plus
    ``meta`` (arch, norm, eps, method, dataset, ...), the layout :func:`to_torchvision` reads. The
    model's own input normalisation is recorded (``mean``/``std``, RGB, for [0, 1] pixels), so a
    release's non-default one travels on with fine-tuned copies."""
    inner = getattr(model, "module", model)
    sd = {k: v.detach().cpu() for k, v in inner.torchvision_state_dict().items()}
    mean, std = inner.normalize.stats()
    return {"model": sd, "rdet": dict(meta, num_classes=inner.num_classes, mean=mean, std=std)}
