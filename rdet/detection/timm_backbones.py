"""Detectron2 backbones over timm classifiers' weights, registered in detectron2's
``BACKBONE_REGISTRY`` so a yacs config selects them with ``MODEL.BACKBONE.NAME``:

* ``build_timm_fpn_backbone``: four stage outputs (strides 4, 8, 16, 32; named ``res2..res5``
  after detectron2's ResNet so the FPN bases apply unchanged) into detectron2's own ``FPN`` +
  ``LastLevelMaxPool`` (``p2..p6``). Swin runs as detectron2's own ``SwinTransformer`` with its
  output norms (:mod:`rdet.detection.swin`: timm's Swin windows differ from the authors' at
  detection sizes); ConvNeXt runs as timm's model (no windows, nothing to differ), held as
  ``.model`` so its tensors keep timm's names, with the output norms of ConvNeXt's detector.
* ``build_timm_vit_sfp_backbone``: detectron2's own ``ViT`` (:mod:`rdet.detection.vit`) under its
  ``SimpleFeaturePyramid`` (ViTDet: ``p2..p6`` from one stride-16 map), window attention of
  ``MODEL.TIMM.WINDOW_SIZE`` tokens in every block except ``MODEL.TIMM.GLOBAL_BLOCKS``.

A converted file (:mod:`rdet.convert.timm`) names ``backbone.bottom_up.model.<timm name>`` and
``backbone.bottom_up.norm{i}`` (ConvNeXt), ``backbone.bottom_up.<detectron2 SwinTransformer name>`` (Swin) or
``backbone.net.<detectron2 ViT name>`` (ViT); :func:`d2_weight_name` maps timm's names onto them.
Input: what detectron2 feeds a backbone, ``(N, 3, H, W)`` normalised with ``MODEL.PIXEL_MEAN/STD``
(0-255 statistics, RGB: the converter's ``.yaml`` sets both from the timm model's mean / std).
"""
from __future__ import annotations

import math
import re
from typing import Dict, List, Optional, Sequence

import torch
import torch.nn as nn
from detectron2.config import CfgNode
from detectron2.layers import ShapeSpec
from detectron2.modeling.backbone import BACKBONE_REGISTRY, FPN, Backbone
from detectron2.modeling.backbone.fpn import LastLevelMaxPool
from detectron2.modeling.backbone.vit import SimpleFeaturePyramid

from rdet.core.errors import ConfigError
from rdet.detection import swin, vit
from rdet.detection.augment import add_lsj_config, check_lsj_config
from rdet.detection.swin import build_swin_stages
from rdet.detection.vit import ViTBlocks, build_vit

FPN_BACKBONE, SFP_BACKBONE = "build_timm_fpn_backbone", "build_timm_vit_sfp_backbone"
# timm modules (where each model class lives) -> the kind of bottom-up rdet builds for it.
_KINDS = {"timm.models.convnext": "convnext", "timm.models.swin_transformer": "swin",
          "timm.models.vision_transformer": "vit"}
_FAMILY_OF_KIND = {"convnext": "hierarchical", "swin": "hierarchical", "vit": "vit"}
BACKBONE_FOR_FAMILY = {"hierarchical": FPN_BACKBONE, "vit": SFP_BACKBONE}
# The names a converted file must follow for each kind (its 'rdet' metadata's "layout"; files
# without one predate the detectron2 Swin / ViT and follow timm's).
WEIGHT_LAYOUT = {"convnext": "timm", "swin": "detectron2.SwinTransformer", "vit": "detectron2.ViT"}


def add_timm_config(cfg: CfgNode) -> None:
    """rdet's ``MODEL.TIMM`` keys and the ViTDet recipe's ``INPUT.LSJ`` (added to detectron2's
    defaults by rdet's ``build_cfg``)."""
    cfg.MODEL.TIMM = CfgNode()
    cfg.MODEL.TIMM.ARCH = ""  # timm (or rdet registry) name, e.g. convnext_tiny, vit_base_patch16_224
    cfg.MODEL.TIMM.DROP_PATH_RATE = 0.0  # stochastic depth while training (ViTDet-B 0.1, Swin-T 0.2)
    cfg.MODEL.TIMM.OUT_FEATURES = ["res2", "res3", "res4", "res5"]  # hierarchical: stride 4..32 stages
    # ViT only (detectron2's ViT, no class token). 0: global attention in every block. > 0: window
    # attention (WINDOW_SIZE x WINDOW_SIZE tokens) in every block but GLOBAL_BLOCKS (ViTDet-B: 14
    # and [2, 5, 8, 11]).
    cfg.MODEL.TIMM.WINDOW_SIZE = 0
    cfg.MODEL.TIMM.GLOBAL_BLOCKS = []
    # ViTDet's relative positions: tables that start at zero (the features are then unchanged) and
    # are learned in detection; timm's weights have none, so off by default (docs/protocol.md).
    cfg.MODEL.TIMM.REL_POS = False
    cfg.MODEL.TIMM.SFP_SCALE_FACTORS = [4.0, 2.0, 1.0, 0.5]  # p2..p5 from the stride-16 map (+ p6 pooled)
    cfg.MODEL.TIMM.SFP_NORM = "LN"
    cfg.MODEL.TIMM.SQUARE_PAD = 0  # ViTDet pads every image to a 1024 square; 0: no square padding
    add_lsj_config(cfg)


def _rdet_spec(arch: str):
    """rdet's registry entry for ``arch`` (``None`` for a plain timm name)."""
    from rdet.backbones import BACKBONE_REGISTRY, get_spec

    return get_spec(arch) if arch in BACKBONE_REGISTRY else None


def timm_name(arch: str) -> str:
    """The timm model name for ``arch``: an rdet registry entry's ``timm_name`` (``swin_tiny`` ->
    ``swin_tiny_patch4_window7_224``), else ``arch`` itself (a timm name)."""
    spec = _rdet_spec(arch)
    return (getattr(spec, "timm_name", None) or arch) if spec is not None else arch


def timm_kind(arch: str) -> Optional[str]:
    """``"convnext"``, ``"swin"``, ``"vit"``, or ``None`` (not a timm model rdet detects with)."""
    import timm
    from timm.models import model_entrypoint

    if not arch:
        return None
    name = timm_name(arch)
    if not timm.is_model(name):
        return None
    return _KINDS.get(model_entrypoint(name).__module__)


def timm_family(arch: str) -> Optional[str]:
    """``"hierarchical"`` (ConvNeXt, Swin: FPN), ``"vit"`` (SimpleFeaturePyramid), or ``None``."""
    return _FAMILY_OF_KIND.get(timm_kind(arch))


def create_timm_net(arch: str, drop_path_rate: float = 0.0, num_classes: int = 1000) -> nn.Module:
    """A randomly initialised timm ``arch`` that accepts any input size (ConvNeXt's detection
    bottom-up, and the converter's reference for it). Swin and ViT are built with
    ``dynamic_img_size`` (timm pads Swin to whole windows, resamples ViT's position embedding).

    An rdet registry name is built by its registry builder (so Singh et al.'s ConvStem variants
    get their stem), with stochastic depth set afterwards; a plain timm name by ``timm.create_model``."""
    import timm

    spec = _rdet_spec(arch)
    if spec is not None:
        net = spec.builder(num_classes)
        if drop_path_rate:
            _set_drop_path(net, drop_path_rate)
        return net
    family = timm_family(arch)
    kw = {"dynamic_img_size": True} if family == "vit" or arch.startswith("swin") else {}
    return timm.create_model(arch, pretrained=False, num_classes=num_classes, drop_path_rate=drop_path_rate, **kw)


def _set_drop_path(net: nn.Module, rate: float) -> None:
    """timm's stochastic-depth schedule on a built model: block ``i`` of ``n`` (in depth order)
    drops its residual branches with probability ``rate * i / (n - 1)``, as ``drop_path_rate`` does
    at construction. timm's blocks hold them as ``drop_path`` (ConvNeXt) or ``drop_path1/2``."""
    from timm.layers import DropPath

    blocks = [m for m in net.modules() if any(hasattr(m, a) for a in ("drop_path", "drop_path1"))]
    for i, blk in enumerate(blocks):
        p = rate * i / max(len(blocks) - 1, 1)
        for a in ("drop_path", "drop_path1", "drop_path2"):
            if isinstance(getattr(blk, a, None), nn.Module):
                setattr(blk, a, DropPath(p) if p > 0 else nn.Identity())


class TimmStages(Backbone):
    """A timm ConvNeXt's stage outputs, ``res2..res5`` = strides 4..32, NCHW, each under its own
    output LayerNorm ``norm{i}`` (channels, eps 1e-6) as ConvNeXt's detection backbone has them
    (``object_detection/mmdet/models/backbones/convnext.py``); no classifier has them, so they
    start at weight 1, bias 0. The timm network is ``.model`` (its own tensor names)."""

    def __init__(self, arch: str, out_features: Sequence[str] = ("res2", "res3", "res4", "res5"),
                 drop_path_rate: float = 0.0):
        super().__init__()
        self.model = create_timm_net(arch, drop_path_rate)
        info = self.model.feature_info  # per stage: num_chs, reduction (stride), module
        names = [f"res{int(math.log2(f['reduction']))}" for f in info]
        unknown = [n for n in out_features if n not in names]
        if unknown:
            raise ConfigError(f"MODEL.TIMM.OUT_FEATURES {unknown[0]}: {arch} has stages {', '.join(names)}")
        self._indices = [names.index(n) for n in out_features]
        # Keeps the stages up to the last one used; drops the classifier head and final norm, which
        # detection never runs (unused parameters would also break DistributedDataParallel).
        self.model.prune_intermediate_layers(self._indices, prune_norm=True, prune_head=True)
        self._out_features = list(out_features)
        self._out_feature_strides = {names[i]: info[i]["reduction"] for i in self._indices}
        self._out_feature_channels = {names[i]: info[i]["num_chs"] for i in self._indices}
        from timm.layers import LayerNorm2d

        for i in self._indices:
            self.add_module(f"norm{i}", LayerNorm2d(info[i]["num_chs"], eps=1e-6))

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        feats = self.model.forward_intermediates(x, indices=self._indices, intermediates_only=True)
        return {n: getattr(self, f"norm{i}")(f) for n, i, f in zip(self._out_features, self._indices, feats)}


def meta_timm_net(arch: str) -> nn.Module:
    """``arch``'s timm network on the meta device (no memory, no init): what detectron2's Swin and
    ViT read their geometry (and the ViT its ConvStem) from."""
    import timm

    spec = _rdet_spec(arch)
    with torch.device("meta"):
        return spec.builder(1000) if spec is not None else timm.create_model(arch, pretrained=False)


def build_bottom_up(arch: str, out_features: Sequence[str] = ("res2", "res3", "res4", "res5"),
                    window_size: int = 0, global_blocks: Sequence[int] = (), drop_path_rate: float = 0.0,
                    rel_pos_size: int = 0) -> Backbone:
    """The network under the pyramid for ``arch``, randomly initialised: :class:`TimmStages`
    (ConvNeXt), :class:`~rdet.detection.swin.SwinStages` or :class:`~rdet.detection.vit.ViTBlocks`
    (``window_size``, ``global_blocks`` and ``rel_pos_size`` are the ViT's; ``out_features`` the
    hierarchical ones')."""
    kind = timm_kind(arch)
    if kind == "swin":
        return build_swin_stages(meta_timm_net(arch), out_features, drop_path_rate)
    if kind == "vit":
        return build_vit(meta_timm_net(arch), window_size, global_blocks, drop_path_rate, rel_pos_size)
    return TimmStages(arch, out_features, drop_path_rate)


def _convnext_name(timm_name: str) -> Optional[str]:
    return None if timm_name.startswith("head.") else "model." + timm_name


# kind -> (timm name -> bottom-up name or None, bottom-up tensors no classifier holds)
_WEIGHT_NAMES = {"convnext": (_convnext_name, re.compile(r"^norm\d\.")), "swin": (swin.d2_name, swin.FRESH),
                 "vit": (vit.d2_name, vit.FRESH)}


def d2_weight_name(arch: str, timm_name: str) -> Optional[str]:
    """The name timm tensor ``timm_name`` of ``arch`` has in :func:`build_bottom_up`'s network;
    ``None`` for the classifier's own tensors (head, final norm, class token)."""
    return _WEIGHT_NAMES[timm_kind(arch)][0](timm_name)


def fresh_tensor(arch: str, name: str) -> bool:
    """Whether bottom-up tensor ``name`` has no counterpart in a classifier (the output norms of
    ConvNeXt and Swin, Swin's relative position index): it keeps the network's initial value."""
    return bool(_WEIGHT_NAMES[timm_kind(arch)][1].search(name))


def same_network(a: str, b: str) -> bool:
    """Whether archs ``a`` and ``b`` build the same network: the same name, or an rdet name and
    the timm name it stands for (``swin_tiny``, ``swin_tiny_patch4_window7_224``). A ConvStem
    variant shares its timm name with the plain model but not its stem, so it matches only itself."""
    if a == b:
        return True
    return "convstem" not in a + b and timm_name(a) == timm_name(b)


def check_timm_config(cfg: CfgNode, weights_meta: Optional[Dict] = None) -> None:
    """One-line :class:`ConfigError` before any work for a timm backbone config that cannot run
    as written, and for ``MODEL.WEIGHTS`` (its converter metadata, ``weights_meta``) that disagrees
    with it: another arch than the config builds (detectron2 would load nothing into it and train
    from random weights) or other input statistics than the weights expect."""
    name = cfg.MODEL.BACKBONE.NAME
    arch = cfg.MODEL.TIMM.ARCH
    meta = weights_meta or {}
    weights_arch = meta.get("arch")
    weights_family = timm_family(weights_arch) if weights_arch else None
    if name not in (FPN_BACKBONE, SFP_BACKBONE):
        if weights_family:
            raise ConfigError(f"MODEL.WEIGHTS holds a {weights_arch} backbone, but MODEL.BACKBONE.NAME is {name}: "
                              f"use {BACKBONE_FOR_FAMILY[weights_family]} with MODEL.TIMM.ARCH {weights_arch}")
        return
    family = timm_family(arch)
    if family is None:
        raise ConfigError(f"MODEL.TIMM.ARCH {arch!r}: not a timm ConvNeXt, Swin or ViT")
    if BACKBONE_FOR_FAMILY[family] != name:
        raise ConfigError(f"MODEL.BACKBONE.NAME {name} cannot build {arch} ({family}): use "
                          f"{BACKBONE_FOR_FAMILY[family]}")
    if cfg.MODEL.BACKBONE.FREEZE_AT:
        raise ConfigError(f"MODEL.BACKBONE.FREEZE_AT {cfg.MODEL.BACKBONE.FREEZE_AT}: timm backbones train every "
                          "stage here (freezing is for ResNets); set 0")
    if family == "vit" and cfg.MODEL.TIMM.WINDOW_SIZE < 0:
        raise ConfigError(f"MODEL.TIMM.WINDOW_SIZE {cfg.MODEL.TIMM.WINDOW_SIZE}: must be >= 0")
    if family == "vit":
        depth = len(meta_timm_net(arch).blocks)
        bad = [b for b in cfg.MODEL.TIMM.GLOBAL_BLOCKS if not 0 <= b < depth]
        if bad:
            raise ConfigError(f"MODEL.TIMM.GLOBAL_BLOCKS {bad[0]}: {arch} has blocks 0..{depth - 1}")
    check_lsj_config(cfg)
    _check_square_pad(cfg, family)
    if weights_arch and not same_network(weights_arch, arch):
        raise ConfigError(f"MODEL.WEIGHTS holds a {weights_arch} backbone, but MODEL.TIMM.ARCH is {arch}")
    layout = WEIGHT_LAYOUT[timm_kind(arch)]
    if weights_arch and meta.get("layout", "timm") != layout:
        raise ConfigError(f"MODEL.WEIGHTS names its {weights_arch} tensors for rdet's earlier timm {timm_kind(arch)} "
                          f"network; today's ({layout}) would load nothing from it: convert the checkpoint again "
                          "(tools/convert_backbone.py)")
    for key in ("mean", "std"):
        want = meta.get(key)
        have = list(getattr(cfg.MODEL, f"PIXEL_{key.upper()}"))
        if want and max(abs(255.0 * w - h) for w, h in zip(want, have)) > 1e-3:
            raise ConfigError(f"MODEL.PIXEL_{key.upper()} {have}: the weights expect "
                              f"{[round(255.0 * w, 4) for w in want]} (0-255, RGB; merge the converter's .yaml)")


def _check_square_pad(cfg: CfgNode, family: str) -> None:
    """detectron2 pads every image to the square: an image larger than it would fail mid-run."""
    pad = cfg.MODEL.TIMM.SQUARE_PAD
    if not pad or family != "vit":
        return
    inp = cfg.INPUT
    sizes = {"INPUT.MAX_SIZE_TEST": inp.MAX_SIZE_TEST}
    sizes.update({"INPUT.LSJ.IMAGE_SIZE": inp.LSJ.IMAGE_SIZE} if inp.LSJ.ENABLED else
                 {"INPUT.MAX_SIZE_TRAIN": inp.MAX_SIZE_TRAIN})
    for key, size in sizes.items():
        if size > pad:
            raise ConfigError(f"{key} {size}: larger than MODEL.TIMM.SQUARE_PAD {pad}, the square every image is "
                              "padded to; lower it or raise SQUARE_PAD")


@BACKBONE_REGISTRY.register()
def build_timm_fpn_backbone(cfg: CfgNode, input_shape: ShapeSpec) -> Backbone:
    """ConvNeXt / Swin stages (``MODEL.TIMM``) + detectron2's FPN (``MODEL.FPN``) -> p2..p6."""
    t = cfg.MODEL.TIMM
    bottom_up = build_bottom_up(t.ARCH, t.OUT_FEATURES, drop_path_rate=t.DROP_PATH_RATE)
    return FPN(bottom_up=bottom_up, in_features=cfg.MODEL.FPN.IN_FEATURES, out_channels=cfg.MODEL.FPN.OUT_CHANNELS,
               norm=cfg.MODEL.FPN.NORM, top_block=LastLevelMaxPool(), fuse_type=cfg.MODEL.FPN.FUSE_TYPE)


@BACKBONE_REGISTRY.register()
def build_timm_vit_sfp_backbone(cfg: CfgNode, input_shape: ShapeSpec) -> Backbone:
    """detectron2's ViT with a timm ViT's geometry (``MODEL.TIMM``) + its SimpleFeaturePyramid
    -> p2..p6 (ViTDet)."""
    t = cfg.MODEL.TIMM
    net = build_bottom_up(t.ARCH, window_size=t.WINDOW_SIZE, global_blocks=t.GLOBAL_BLOCKS,
                          drop_path_rate=t.DROP_PATH_RATE, rel_pos_size=(t.SQUARE_PAD or 1024) if t.REL_POS else 0)
    return SimpleFeaturePyramid(net=net, in_feature="last_feat", out_channels=cfg.MODEL.FPN.OUT_CHANNELS,
                                scale_factors=tuple(t.SFP_SCALE_FACTORS), top_block=LastLevelMaxPool(),
                                norm=t.SFP_NORM, square_pad=t.SQUARE_PAD)


def convnext_layer_id(name: str, num_layers: int) -> int:
    """ConvNeXt's detection recipe's layer for parameter ``name`` (``layer_wise`` in ConvNeXt's
    ``object_detection/mmcv_custom/layer_decay_optimizer_constructor.py``, on timm's names): stem
    0, stage 0 1, stage 1 2, stage 2's downsampling 3 and its blocks ``3 + block // 3``, stage 3
    ``num_layers``; everything else (output norms, FPN, heads) ``num_layers + 1``."""
    parts = name.split("bottom_up.model.", 1)[-1].split(".") if "bottom_up.model." in name else []
    if parts[:1] == ["stem"]:
        return 0
    if parts[:1] != ["stages"]:
        return num_layers + 1
    stage = int(parts[1])
    if stage == 2:
        return 3 if parts[2] == "downsample" else 3 + int(parts[3]) // 3
    return {0: 1, 1: 2}.get(stage, num_layers)


def convnext_stage_id(name: str, num_layers: int) -> int:
    """ConvNeXt's segmentation recipe's group for parameter ``name`` (``stage_wise`` in ConvNeXt's
    and mmsegmentation's ``LearningRateDecayOptimizerConstructor``, on timm's names): the stem and
    every stage's downsampling layer 0, the blocks of stage ``i`` ``i + 1``, everything else
    (output norms, the heads) ``num_layers + 1``."""
    parts = name.split("bottom_up.model.", 1)[-1].split(".") if "bottom_up.model." in name else []
    if parts[:1] == ["stem"] or (parts[:1] == ["stages"] and parts[2:3] == ["downsample"]):
        return 0
    return int(parts[1]) + 1 if parts[:1] == ["stages"] else num_layers + 1


def layer_decay_rate(backbone: nn.Module, decay: float, mode: str = "layer"):
    """``name -> lr factor`` for layer-wise lr decay on ``backbone``, as its recipe has it; ``None``
    for a backbone without one. ViT (ViTDet): block ``i`` of ``L`` ``decay ** (L - i)``, patch and
    position embedding ``decay ** (L + 1)`` (detectron2's ``get_vit_lr_decay_rate``). ConvNeXt
    (its detection recipe): ``decay ** (n + 1 - layer)`` with :func:`convnext_layer_id` over
    ``n = 3 + (blocks of stage 2) // 3`` groups (ConvNeXt-T's ``num_layers`` 6, S/B/L's 12);
    ``mode="stage"`` (its segmentation recipe): ``decay ** (n + 1 - group)`` with
    :func:`convnext_stage_id` and the same ``n`` (the recipe's ``num_layers``: 6 for T, 12 for S/B/L),
    so the heads train at the base lr, stage ``i`` at ``decay ** (n - i)``, the stem and the
    downsampling layers at ``decay ** (n + 1)``."""
    import functools

    from detectron2.modeling.backbone.vit import get_vit_lr_decay_rate

    depth = vit_num_layers(backbone)
    if depth is not None:
        return functools.partial(get_vit_lr_decay_rate, lr_decay_rate=decay, num_layers=depth)
    bottom_up = getattr(backbone, "bottom_up", None)
    if isinstance(bottom_up, TimmStages) and hasattr(bottom_up.model, "stages"):
        n = 3 + len(bottom_up.model.stages[2].blocks) // 3
        if mode == "stage":
            return lambda name: decay ** (n + 1 - convnext_stage_id(name, n))
        return lambda name: decay ** (n + 1 - convnext_layer_id(name, n))
    return None


def vit_num_layers(backbone: nn.Module) -> Optional[int]:
    """Blocks of the ViT inside a built SFP backbone (for layer-wise lr decay); ``None`` otherwise."""
    net = getattr(backbone, "net", None)
    return net.num_layers if isinstance(net, ViTBlocks) else None


def out_feature_names(family: str) -> List[str]:
    return ["last_feat"] if family == "vit" else ["res2", "res3", "res4", "res5"]
