"""Convert a torchvision / robustness-library ResNet into a Detectron2 backbone checkpoint.

Outputs, for ``OUTPUT`` = ``name.pkl`` (or ``name.pth``):

* ``name.pkl``: detectron2's model-zoo format ``{'model': {name: np.ndarray}, '__author__',
  'matching_heuristics': True}`` plus ``'rdet'`` (arch, norm, eps, source, geometry) so results
  can be traced back to the backbone; ``.pth`` holds the same dict with torch tensors.
* ``name.yaml``: the config fragment that makes detectron2 compute what torchvision computes:
  RGB input, torchvision's mean/std in 0-255, stride in the 3x3 conv (``STRIDE_IN_1X1: False``)
  and the depth / width / groups of the network. detectron2's own defaults (BGR, caffe2 means,
  stride in 1x1) would silently degrade a torchvision backbone.

Both files are written atomically and removed again if self-verification fails.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Optional

import torch

from rdet.backbones import get_spec, load_checkpoint
from rdet.backbones.checkpoint import resolve
from rdet.backbones.skip_init import check_loaded, skip_parameter_init
from rdet.convert.keys import to_detectron2
from rdet.core.errors import ArchError
from rdet.core.safe_pickle import load_pickle
from rdet.convert.output import MAX_REL_ERROR, ConversionResult, check_output, d2_settings, write_checked  # noqa: F401 (MAX_REL_ERROR re-exported)

def d2_config_dict(meta: Dict[str, Any], weights: Path) -> Dict[str, Any]:
    """The detectron2 config keys (nested dict) for a converted backbone described by ``meta``."""
    g = meta["d2"]
    return d2_settings(meta, weights, {"RESNETS": {
        "DEPTH": g["depth"],
        "RES2_OUT_CHANNELS": g["res2_out_channels"],
        "WIDTH_PER_GROUP": g["width_per_group"],
        "NUM_GROUPS": g["num_groups"],
        "STRIDE_IN_1X1": False,
    }})


def _yaml_text(meta: Dict[str, Any], weights: Path) -> str:
    import yaml

    head = (f"# Detectron2 settings for {meta['arch']} (norm={meta.get('norm')}, eps={meta.get('eps')}),\n"
            f"# converted by rdet from {meta.get('source')}.\n"
            "# Merge after a detectron2 config: cfg.merge_from_file(<this file>).\n")
    return head + yaml.safe_dump(d2_config_dict(meta, weights), sort_keys=False)


def read_converted_meta(weights: str | Path, allow_pickle: bool = False) -> Dict[str, Any]:
    """The ``'rdet'`` metadata of a converted file (``{}`` for files rdet did not write).

    A ``.pkl`` is read with :func:`rdet.core.safe_pickle.load_pickle` (no code runs from it unless
    ``allow_pickle``); a missing file is ``{}``, an unreadable or unsafe one a :class:`CheckpointError`."""
    path = Path(weights)
    if not path.is_file():
        return {}
    if path.suffix == ".pkl":
        data = load_pickle(path, allow_pickle=allow_pickle)
    else:
        try:
            data = torch.load(path, map_location="cpu", weights_only=True)
        except Exception:
            return {}
    meta = data.get("rdet") if isinstance(data, dict) else None
    return dict(meta) if isinstance(meta, dict) else {}


def convert_to_detectron2(src: str | Path, output: str | Path, arch: Optional[str] = None,
                          verify: bool = True, allow_pickle: bool = False, input_norm: str = "",
                          variant: str = "") -> ConversionResult:
    """Convert ``src`` (checkpoint file or catalog name) into ``output`` (+ ``.yaml``).

    ``verify``: rebuild detectron2's backbone from the emitted config, load the written file
    through ``DetectionCheckpointer`` and compare res2..res5 with torchvision's layer1..layer4;
    above :data:`MAX_REL_ERROR` both outputs are removed and an error is raised.
    """
    output = Path(output).absolute()
    check_output(output)
    if arch is not None:
        get_spec(arch)
    loaded = load_checkpoint(resolve(str(src)), arch=arch, allow_pickle=allow_pickle, input_norm=input_norm,
                             variant=variant)  # its input normalisation becomes MODEL.PIXEL_MEAN / PIXEL_STD
    spec = get_spec(loaded.arch)
    if spec.d2 is None and getattr(spec, "family", None) in ("convnext", "swin", "vit"):  # timm: rdet.convert.timm
        from rdet.convert.timm import convert_timm

        return convert_timm(loaded.state_dict, loaded.arch, output, loaded.meta, verify=verify, src=str(src))
    if spec.d2 is None:
        raise ArchError(f"{src}: {loaded.arch} is not convertible: Detectron2 backbones are ResNets "
                        f"(resnet18/34/50/101, wide_resnet50_2/4, resnext50_32x4d), ConvNeXt, Swin and ViT")
    meta = {
        "arch": loaded.arch, "norm": loaded.meta.get("norm"), "eps": loaded.meta.get("eps"),
        "method": loaded.meta.get("method"), "source": loaded.meta.get("source", str(src)),
        "format": loaded.meta.get("format"), "input_norm": loaded.meta.get("input_norm"),
        "weights_variant": loaded.meta.get("weights_variant"),
        "mean": list(loaded.meta["mean"]), "std": list(loaded.meta["std"]),
        "d2": {"depth": spec.d2.depth, "res2_out_channels": spec.d2.res2_out_channels,
               "width_per_group": spec.d2.width_per_group, "num_groups": spec.d2.num_groups},
    }
    d2_sd = to_detectron2(loaded.state_dict)
    config = output.with_suffix(".yaml")
    check = (lambda: verify_conversion(loaded.state_dict, loaded.arch, output, config)) if verify else None
    err = write_checked(output, config, d2_sd, meta, _yaml_text(meta, output), check, str(src), "torchvision")
    return ConversionResult(output, config, meta, err)


def build_d2_backbone(config: Path):
    """detectron2's ResNet (res2..res5 outputs, FrozenBN) built from a converter .yaml, with the
    weights its ``MODEL.WEIGHTS`` names loaded through ``DetectionCheckpointer``, as
    ``model.backbone.bottom_up`` of a wrapper (the name path an FPN model uses)."""
    from detectron2.checkpoint import DetectionCheckpointer
    from detectron2.config import get_cfg
    from detectron2.layers import ShapeSpec
    from detectron2.modeling.backbone.resnet import build_resnet_backbone

    cfg = get_cfg()
    cfg.merge_from_file(str(config))
    cfg.MODEL.RESNETS.OUT_FEATURES = ["res2", "res3", "res4", "res5"]
    cfg.MODEL.RESNETS.NORM = "FrozenBN"
    with skip_parameter_init() as skipped:  # every parameter comes from the file
        resnet = build_resnet_backbone(cfg, ShapeSpec(channels=3))
    holder = torch.nn.Module()
    holder.backbone = torch.nn.Module()
    holder.backbone.bottom_up = resnet
    DetectionCheckpointer(holder).load(cfg.MODEL.WEIGHTS)
    check_loaded(resnet, skipped, str(cfg.MODEL.WEIGHTS))  # detectron2's checkpointer only logs a missing key
    return cfg, resnet.eval()


@torch.no_grad()
def compare_features(tv_sd: Dict[str, torch.Tensor], arch: str, cfg, d2_resnet, size: int = 64,
                     seed: int = 0) -> float:
    """Max over res2..res5 of max|d2 - tv| / max|tv| on one random [0,1] RGB batch (2 x 3 x
    ``size`` x ``size``): torchvision's layer1..layer4 outputs against detectron2's res2..res5."""
    spec = get_spec(arch)
    with skip_parameter_init() as skipped:
        net = spec.builder(1000)
    head = spec.classifier + "."
    # The classifier head is irrelevant here (and may have any number of classes, or be absent).
    parent, _, leaf = spec.classifier.rpartition(".")
    setattr(net.get_submodule(parent) if parent else net, leaf, torch.nn.Identity())
    net.load_state_dict({k: v for k, v in tv_sd.items() if not k.startswith(head)})
    check_loaded(net, skipped, "the converted weights")
    net.eval()
    x = torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(seed))
    mean = torch.tensor(spec.mean).view(1, 3, 1, 1)
    std = torch.tensor(spec.std).view(1, 3, 1, 1)
    tv = _resnet_stages(net, (x - mean) / std)
    pm = torch.tensor(cfg.MODEL.PIXEL_MEAN).view(1, 3, 1, 1)
    ps = torch.tensor(cfg.MODEL.PIXEL_STD).view(1, 3, 1, 1)
    d2 = d2_resnet((x * 255.0 - pm) / ps)
    return max(float((d2[k] - tv[k]).abs().max() / tv[k].abs().max().clamp_min(1e-12)) for k in tv)


def _resnet_stages(net, x: torch.Tensor) -> Dict[str, torch.Tensor]:
    """``{"res2": layer1(...), ..., "res5": layer4(...)}`` of a torchvision ResNet, through its
    public stem and stage modules (no FX tracing, no torchvision private helper)."""
    x = net.maxpool(net.relu(net.bn1(net.conv1(x))))
    out = {}
    for i in range(1, 5):
        x = getattr(net, f"layer{i}")(x)
        out[f"res{i + 1}"] = x
    return out


def verify_conversion(tv_sd: Dict[str, torch.Tensor], arch: str, weights: Path, config: Path) -> float:
    cfg, resnet = build_d2_backbone(config)
    return compare_features(tv_sd, arch, cfg, resnet)
