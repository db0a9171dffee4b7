"""Convert a timm ConvNeXt / Swin / ViT classifier into a Detectron2 backbone checkpoint.

Outputs, for ``OUTPUT`` = ``name.pkl`` (or ``name.pth``), as the ResNet converter's:

* ``name.pkl``: ``{'model': {name: np.ndarray}, '__author__': 'rdet', 'matching_heuristics':
  False, 'rdet': meta}``. Names are exact, those of the detection network rdet builds
  (``rdet.detection.timm_backbones.build_bottom_up``): ``backbone.bottom_up.model.<timm name>``
  (ConvNeXt, timm's own network, and ``backbone.bottom_up.norm{i}``, the output norms of
  ConvNeXt's detector, weight 1 and bias 0), ``backbone.bottom_up.<name>`` of detectron2's
  ``SwinTransformer`` (timm's patch merging moved to the stage it ends; the output norms
  ``norm0..3`` as detectron2 initialises them, weight 1 and bias 0; the relative position index),
  ``backbone.net.<name>`` of detectron2's ``ViT`` (the class token dropped, ``pos_embed`` kept
  with its class entry). No classifier head or final norm. Every tensor of the detection network
  is written and each shape checked. detectron2's suffix matching stays off: names repeat per
  block, and exact names load exactly.
* ``name.yaml``: ``MODEL.BACKBONE.NAME``, ``MODEL.TIMM.ARCH``, RGB input and the model's
  mean / std in 0-255 (timm's ViTs use 0.5 / 0.5, not ImageNet's statistics).

Check: detectron2's backbone is rebuilt from the ``.yaml`` through the registered builder, the
written file loaded through ``DetectionCheckpointer``, and its bottom-up features compared with
an independent reference, timm's own model on the same weights, at a size where the two networks
must agree exactly (:data:`CHECK_SIZE`): ConvNeXt through timm's ``features_only`` path (the
output norms applied); Swin
with timm built for 448 px, where every stage side is a multiple of the 7-token window and
larger than it, so timm shifts every odd block and pads nothing, as detectron2's Swin does (the
output norms applied to timm's stages); ViT at 224 px with ViTDet's windows (14 tokens: the whole
grid is one window, so windowed equals global) against timm's blocks run on the grid tokens
without the class token. Above :data:`MAX_REL_ERROR` both outputs are removed and an error is
raised.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence

import torch

from rdet.convert.output import ConversionResult, check_output, d2_settings, write_checked
from rdet.core.errors import ArchError, CheckpointError

PREFIX = {"hierarchical": "backbone.bottom_up.", "vit": "backbone.net."}
# kind -> (images, H, W) of the check's random batch: sizes where the reference is exact (above);
# ConvNeXt at a size that is no multiple of 32, so every stage's padding is exercised.
CHECK_SIZE = {"convnext": (2, 64, 96), "swin": (1, 448, 448), "vit": (2, 224, 224)}


def _family(arch: str) -> str:
    from rdet.detection.timm_backbones import timm_family

    family = timm_family(arch)
    if family is None:
        raise ArchError(f"{arch}: not a timm ConvNeXt, Swin or ViT (the timm detection backbones)")
    return family


def _kind(arch: str) -> str:
    from rdet.detection.timm_backbones import timm_kind

    return timm_kind(arch)


def backbone_state_dict(sd: Mapping[str, torch.Tensor], arch: str, family: str, src: str) -> Dict[str, torch.Tensor]:
    """Every tensor of ``arch``'s detection bottom-up, under its detectron2 name: mapped from timm
    state dict ``sd`` (``rdet.detection.timm_backbones.d2_weight_name``), or, for the few no
    classifier holds (Swin's output norms and position index), the network's own initial value.

    A tensor the network needs that ``sd`` lacks, one ``sd`` holds that the network has no place
    for, or a shape that differs, is a one-line :class:`CheckpointError` (another arch or variant)."""
    from rdet.detection.timm_backbones import build_bottom_up, d2_weight_name, fresh_tensor

    net = build_bottom_up(arch).state_dict()
    mapped = {}
    for k, v in sd.items():
        name = d2_weight_name(arch, k)
        if name is not None:
            mapped[name] = (k, v)
    extra = [k for name, (k, _) in mapped.items() if name not in net]
    if extra:
        raise CheckpointError(f"{src}: holds {extra[0]}, which rdet's {arch} detection backbone has no place for "
                              f"({len(extra)} such tensors); check --arch")
    missing = [n for n in net if n not in mapped and not fresh_tensor(arch, n)]
    if missing:
        raise CheckpointError(f"{src}: not a {arch} checkpoint ({len(missing)} of its backbone tensors missing, "
                              f"e.g. {missing[0]}); check --arch")
    wrong = [(k, v, n) for n, (k, v) in mapped.items() if tuple(v.shape) != tuple(net[n].shape)]
    if wrong:
        k, v, n = wrong[0]
        raise CheckpointError(f"{src}: not a {arch} checkpoint ({k} is {tuple(v.shape)}, {arch} has "
                              f"{tuple(net[n].shape)}); check --arch")
    out = {}
    for n, init in net.items():
        t = mapped[n][1] if n in mapped else init
        t = t.detach().cpu()
        out[PREFIX[family] + n] = (t.float() if t.is_floating_point() else t).contiguous()
    return out


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
    from rdet.detection.timm_backbones import WEIGHT_LAYOUT

    output = Path(output).absolute()
    check_output(output)
    src = src or str((meta or {}).get("source", "state dict"))
    family = _family(arch)
    d2_sd = backbone_state_dict(sd, arch, family, src)
    m = dict(meta or {})
    default_mean, default_std = _timm_stats(arch)
    meta = {"arch": arch, "norm": m.get("norm"), "eps": m.get("eps"), "method": m.get("method"),
            "source": m.get("source", src), "format": m.get("format"), "family": family,
            "timm_arch": _timm_name(arch), "layout": WEIGHT_LAYOUT[_kind(arch)],
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


def build_detection_backbone(config: Path, opts: Sequence[str] = ()):
    """detectron2's backbone (``build_backbone``, the registered timm builder) from a converter
    ``.yaml`` and ``KEY VALUE`` ``opts``, with the file its ``MODEL.WEIGHTS`` names loaded through
    ``DetectionCheckpointer``; returns ``(cfg, bottom_up)`` where ``bottom_up`` is the FPN's
    ``bottom_up`` or the SFP's ``net``."""
    from detectron2.checkpoint import DetectionCheckpointer
    from detectron2.config import get_cfg
    from detectron2.modeling import build_backbone

    from rdet.detection.timm_backbones import add_timm_config

    cfg = get_cfg()
    add_timm_config(cfg)
    cfg.merge_from_file(str(config))
    cfg.merge_from_list(list(opts))
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
    """timm's own features for weights ``sd`` on normalised input ``x`` (NCHW, the kind's
    :data:`CHECK_SIZE`), through timm's modules rather than the detection backbone's: ConvNeXt
    through ``FeatureListNet`` (what ``features_only=True`` builds), Swin through it with timm's
    model built for ``x``'s size, both under their detectors' output norms as a fresh file holds
    them (weight 1, bias 0; eps 1e-6 for ConvNeXt, 1e-5 for Swin), ViT as timm's patch embedding, position embedding (grid entries) and blocks on the grid
    tokens (last block, no final norm). Keys as the detection backbone names them."""
    import torch.nn.functional as F
    from timm.models import FeatureListNet

    from rdet.detection.timm_backbones import create_timm_net, out_feature_names, timm_name

    kind = _kind(arch)
    head = "head.fc.weight" if "head.fc.weight" in sd else "head.weight"
    classes = int(sd[head].shape[0]) if head in sd else 1000
    if kind == "swin":
        import timm

        net = timm.create_model(timm_name(arch), pretrained=False, num_classes=classes, img_size=tuple(x.shape[-2:]))
    else:
        net = create_timm_net(arch, num_classes=classes)
    missing, unexpected = net.load_state_dict(dict(sd), strict=False)
    assert not unexpected and all(k.startswith("head") for k in missing), (missing[:3], unexpected[:3])
    net.eval()
    if kind == "vit":
        tokens = net.patch_embed(x)  # (N, h, w, C): built with dynamic_img_size
        n, h, w, c = tokens.shape
        assert (h, w) == tuple(net.patch_embed.grid_size), "the ViT reference runs at its pretraining grid"
        tokens = net.blocks(net.norm_pre(tokens.reshape(n, h * w, c) + net.pos_embed[:, net.num_prefix_tokens:]))
        feats = [tokens.transpose(1, 2).reshape(n, c, h, w)]
    else:
        feats = FeatureListNet(net, out_indices=(0, 1, 2, 3), flatten_sequential=True).eval()(x)
        if kind == "swin":  # (N, H, W, C) stages, each under a fresh output LayerNorm
            feats = [F.layer_norm(f, f.shape[-1:]).permute(0, 3, 1, 2) for f in feats]
        else:  # ConvNeXt's output norms: over channels, eps 1e-6, fresh
            feats = [F.layer_norm(f.permute(0, 2, 3, 1), f.shape[1:2], eps=1e-6).permute(0, 3, 1, 2) for f in feats]
    return dict(zip(out_feature_names(_family(arch)), feats))


def check_opts(arch: str) -> List[str]:
    """Config overrides for the check's detection backbone: for a ViT, ViTDet's windows with the
    pretraining grid as the window (14 tokens at 224 px) and global attention in every quarter's
    last block (2, 5, 8, 11 of 12), so the windowed path runs and is exact at :data:`CHECK_SIZE`."""
    if _kind(arch) != "vit":
        return []
    from rdet.detection.timm_backbones import meta_timm_net

    net = meta_timm_net(arch)
    depth = len(net.blocks)
    blocks = [(k + 1) * depth // 4 - 1 for k in range(4)]
    return ["MODEL.TIMM.WINDOW_SIZE", str(net.patch_embed.grid_size[0]),
            "MODEL.TIMM.GLOBAL_BLOCKS", str(blocks)]


@torch.no_grad()
def compare_features(sd: Mapping[str, torch.Tensor], arch: str, cfg, bottom_up, seed: int = 0) -> float:
    """Max over the features of max|d2 - timm| / max|timm| on one random [0, 1] RGB batch of the
    kind's :data:`CHECK_SIZE`: timm normalises with the checkpoint's mean / std (0-1), detectron2
    with ``MODEL.PIXEL_MEAN / PIXEL_STD`` on the same pixels times 255."""
    meta_mean = torch.tensor(cfg.MODEL.PIXEL_MEAN).view(1, 3, 1, 1) / 255.0
    meta_std = torch.tensor(cfg.MODEL.PIXEL_STD).view(1, 3, 1, 1) / 255.0
    n, h, w = CHECK_SIZE[_kind(arch)]
    x = torch.rand(n, 3, h, w, generator=torch.Generator().manual_seed(seed))
    ref = reference_features(sd, arch, (x - meta_mean) / meta_std)
    pm = torch.tensor(cfg.MODEL.PIXEL_MEAN).view(1, 3, 1, 1)
    ps = torch.tensor(cfg.MODEL.PIXEL_STD).view(1, 3, 1, 1)
    d2 = bottom_up((x * 255.0 - pm) / ps)
    return max(float((d2[k] - ref[k]).abs().max() / ref[k].abs().max().clamp_min(1e-12)) for k in ref)


def verify_conversion(sd: Mapping[str, torch.Tensor], arch: str, config: Path) -> float:
    cfg, bottom_up = build_detection_backbone(config, check_opts(arch))
    return compare_features(sd, arch, cfg, bottom_up)
