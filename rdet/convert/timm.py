"""Convert a timm ConvNeXt / Swin / ViT classifier into a Detectron2 backbone checkpoint.

Outputs, for ``OUTPUT`` = ``name.pkl`` (or ``name.pth``), as the ResNet converter's:

* ``name.pkl``: ``{'model': {name: np.ndarray}, '__author__': 'rdet', 'matching_heuristics':
  False, 'rdet': meta}``. Names are exact: ``backbone.bottom_up.model.<timm name>`` for the FPN
  backbone (ConvNeXt, Swin), ``backbone.net.model.<timm name>`` for ViTDet's SimpleFeaturePyramid
  (ViT); only the tensors the detection backbone holds (no classifier head, no final norm).
  detectron2's suffix matching stays off: ViT names repeat per block, and exact names load exactly.
* ``name.yaml``: ``MODEL.BACKBONE.NAME``, ``MODEL.TIMM.ARCH``, RGB input and the model's
  mean / std in 0-255 (timm's ViTs use 0.5 / 0.5, not ImageNet's statistics).

Check: detectron2's backbone is rebuilt from the ``.yaml`` through the registered builder, the
written file loaded through ``DetectionCheckpointer``, and its bottom-up features (``res2..res5``,
or the ViT's ``last_feat`` with global attention, i.e. ``MODEL.TIMM.WINDOW_SIZE 0``) compared with
those of timm's own ``features_only`` model loaded from the same weights by timm's own loader.
Above :data:`MAX_REL_ERROR` both outputs are removed and an error is raised.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Dict, Mapping, Optional

import torch

from rdet.convert.detectron2 import ConversionResult, d2_settings, write_checked
from rdet.core.errors import ArchError, CheckpointError

PREFIX = {"hierarchical": "backbone.bottom_up.model.", "vit": "backbone.net.model."}
CHECK_SIZE = (64, 96)  # H, W of the check's random batch: not 224, so ViT resamples its position embedding


def _family(arch: str) -> str:
    from rdet.detection.timm_backbones import timm_family

    family = timm_family(arch)
    if family is None:
        raise ArchError(f"{arch}: not a timm ConvNeXt, Swin or ViT (the timm detection backbones)")
    return family


def _detection_net(arch: str, family: str) -> torch.nn.Module:
    from rdet.detection.timm_backbones import TimmStages, TimmViT

    return TimmViT(arch) if family == "vit" else TimmStages(arch)


def backbone_state_dict(sd: Mapping[str, torch.Tensor], arch: str, family: str, src: str) -> Dict[str, torch.Tensor]:
    """The detection backbone's tensors from timm state dict ``sd``, under their detectron2 names.

    A name the backbone needs that ``sd`` lacks, or a shape that differs, is a one-line
    :class:`CheckpointError` (another arch or variant than ``arch``)."""
    wanted = {k[len("model."):]: v.shape for k, v in _detection_net(arch, family).state_dict().items()}
    missing = [k for k in wanted if k not in sd]
    if missing:
        raise CheckpointError(f"{src}: not a {arch} checkpoint ({len(missing)} of its backbone tensors missing, "
                              f"e.g. {missing[0]}); check --arch")
    wrong = [k for k, shape in wanted.items() if tuple(sd[k].shape) != tuple(shape)]
    if wrong:
        k = wrong[0]
        raise CheckpointError(f"{src}: not a {arch} checkpoint ({k} is {tuple(sd[k].shape)}, {arch} has "
                              f"{tuple(wanted[k])}); check --arch")
    return {PREFIX[family] + k: sd[k].detach().float().cpu().contiguous() for k in wanted}


def d2_config_dict(meta: Dict[str, Any], weights: Path) -> Dict[str, Any]:
    """The detectron2 config keys for a converted timm backbone: rdet's backbone for its family."""
    from rdet.detection.timm_backbones import BACKBONE_FOR_FAMILY

    return d2_settings(meta, weights, {"BACKBONE": {"NAME": BACKBONE_FOR_FAMILY[meta["family"]], "FREEZE_AT": 0},
                                       "TIMM": {"ARCH": meta["arch"]}})


def _yaml_text(meta: Dict[str, Any], weights: Path) -> str:
    import yaml

    head = (f"# Detectron2 settings for {meta['arch']} (timm, {meta['family']}; norm={meta.get('norm')}, "
            f"eps={meta.get('eps')}),\n# converted by rdet from {meta.get('source')}.\n"
            "# Merge after a detectron2 config built by rdet (MODEL.TIMM keys): cfg.merge_from_file(<this file>).\n")
    return head + yaml.safe_dump(d2_config_dict(meta, weights), sort_keys=False)


def convert_timm(sd: Mapping[str, torch.Tensor], arch: str, output: str | Path, meta: Optional[Dict[str, Any]] = None,
                 verify: bool = True, src: Optional[str] = None) -> ConversionResult:
    """Write ``output`` (+ ``.yaml``) from timm state dict ``sd`` of ``arch`` (classifier head
    optional); ``meta``: the checkpoint's norm / eps / method / source / mean / std (RGB, 0-1)."""
    from rdet.convert.detectron2 import _check_output

    output = Path(output).absolute()
    _check_output(output)
    src = src or str((meta or {}).get("source", "state dict"))
    family = _family(arch)
    d2_sd = backbone_state_dict(sd, arch, family, src)
    m = dict(meta or {})
    default_mean, default_std = _timm_stats(arch)
    meta = {"arch": arch, "norm": m.get("norm"), "eps": m.get("eps"), "method": m.get("method"),
            "source": m.get("source", src), "format": m.get("format"), "family": family,
            "timm_arch": _timm_name(arch),
            "mean": [float(v) for v in m.get("mean", default_mean)], "std": [float(v) for v in m.get("std", default_std)]}
    config = output.with_suffix(".yaml")
    check = (lambda: verify_conversion(sd, arch, config)) if verify else None
    err = write_checked(output, config, d2_sd, meta, _yaml_text(meta, output), check, str(src), "timm",
                        matching_heuristics=False)
    return ConversionResult(output, config, meta, err)


def _timm_name(arch: str) -> str:
    from rdet.detection.timm_backbones import timm_name

    return timm_name(arch)


def _timm_stats(arch: str):
    """The mean / std ``arch``'s weights expect (RGB, 0-1): its rdet registry entry's, else timm's
    pretrained config's (used when the checkpoint carries no normaliser of its own)."""
    import timm

    try:
        from rdet.backbones import get_spec

        spec = get_spec(arch)
        return tuple(spec.mean), tuple(spec.std)
    except Exception:  # noqa: BLE001 - not an rdet registry name (ArchError): a plain timm name
        pass

    cfg = timm.models.get_pretrained_cfg(_timm_name(arch))
    mean = getattr(cfg, "mean", None) or (0.485, 0.456, 0.406)
    std = getattr(cfg, "std", None) or (0.229, 0.224, 0.225)
    return tuple(mean), tuple(std)


def build_detection_backbone(config: Path):
    """detectron2's backbone (``build_backbone``, the registered timm builder) from a converter
    ``.yaml``, with the file its ``MODEL.WEIGHTS`` names loaded through ``DetectionCheckpointer``;
    returns ``(cfg, bottom_up)`` where ``bottom_up`` is the FPN's ``bottom_up`` or the SFP's ``net``."""
    from detectron2.checkpoint import DetectionCheckpointer
    from detectron2.config import get_cfg
    from detectron2.modeling import build_backbone

    from rdet.detection.timm_backbones import add_timm_config

    cfg = get_cfg()
    add_timm_config(cfg)
    cfg.merge_from_file(str(config))
    cfg.MODEL.FPN.IN_FEATURES = list(cfg.MODEL.TIMM.OUT_FEATURES)  # detectron2's default is none
    holder = torch.nn.Module()
    holder.backbone = build_backbone(cfg)
    # The file holds the bottom-up network only: fvcore would warn (on stderr, once detectron2's
    # logging is set up) that the pyramid's own layers are missing, which is expected here.
    ckpt_log = logging.getLogger("fvcore.common.checkpoint")
    level = ckpt_log.level
    ckpt_log.setLevel(logging.ERROR)
    try:
        DetectionCheckpointer(holder).load(cfg.MODEL.WEIGHTS)
    finally:
        ckpt_log.setLevel(level)
    # A tensor the file lacks stays at random init: the feature check then fails.
    inner = getattr(holder.backbone, "bottom_up", None) or holder.backbone.net
    return cfg, inner.eval()


def reference_features(sd: Mapping[str, torch.Tensor], arch: str, x: torch.Tensor) -> Dict[str, torch.Tensor]:
    """timm's own features for weights ``sd`` on normalised input ``x`` (NCHW), through timm's
    feature APIs rather than the detection backbone's code path: ConvNeXt / Swin through
    ``FeatureListNet`` (what ``features_only=True`` builds: the model's modules run in sequence,
    Swin's NHWC stage outputs permuted here), ViT through ``get_intermediate_layers`` (last block,
    no final norm). Keys as the detection backbone names them."""
    from timm.models import FeatureListNet

    from rdet.detection.timm_backbones import create_timm_net, out_feature_names

    family = _family(arch)
    head = "head.fc.weight" if "head.fc.weight" in sd else "head.weight"
    net = create_timm_net(arch, num_classes=int(sd[head].shape[0]) if head in sd else 1000)
    missing, unexpected = net.load_state_dict(dict(sd), strict=False)
    assert not unexpected and all(k.startswith("head") for k in missing), (missing[:3], unexpected[:3])
    net.eval()
    if family == "vit":
        feats = net.get_intermediate_layers(x, n=[len(net.blocks) - 1], reshape=True, norm=False)
    else:
        ref = FeatureListNet(net, out_indices=(0, 1, 2, 3), flatten_sequential=True).eval()
        feats = ref(x)
        if type(net).__module__ == "timm.models.swin_transformer":  # Swin's stages are (N, H, W, C)
            feats = [f.permute(0, 3, 1, 2) for f in feats]
    return dict(zip(out_feature_names(family), feats))


@torch.no_grad()
def compare_features(sd: Mapping[str, torch.Tensor], arch: str, cfg, bottom_up, seed: int = 0) -> float:
    """Max over the features of max|d2 - timm| / max|timm| on one random [0, 1] RGB batch
    (2 x 3 x :data:`CHECK_SIZE`): timm normalises with the checkpoint's mean / std (0-1),
    detectron2 with ``MODEL.PIXEL_MEAN / PIXEL_STD`` on the same pixels times 255."""
    meta_mean = torch.tensor(cfg.MODEL.PIXEL_MEAN).view(1, 3, 1, 1) / 255.0
    meta_std = torch.tensor(cfg.MODEL.PIXEL_STD).view(1, 3, 1, 1) / 255.0
    x = torch.rand(2, 3, *CHECK_SIZE, generator=torch.Generator().manual_seed(seed))
    ref = reference_features(sd, arch, (x - meta_mean) / meta_std)
    pm = torch.tensor(cfg.MODEL.PIXEL_MEAN).view(1, 3, 1, 1)
    ps = torch.tensor(cfg.MODEL.PIXEL_STD).view(1, 3, 1, 1)
    d2 = bottom_up((x * 255.0 - pm) / ps)
    return max(float((d2[k] - ref[k]).abs().max() / ref[k].abs().max().clamp_min(1e-12)) for k in ref)


def verify_conversion(sd: Mapping[str, torch.Tensor], arch: str, config: Path) -> float:
    cfg, bottom_up = build_detection_backbone(config)
    return compare_features(sd, arch, cfg, bottom_up)
