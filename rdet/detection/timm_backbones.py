"""Detectron2 backbones over timm models, registered in detectron2's ``BACKBONE_REGISTRY`` so a
yacs config selects them with ``MODEL.BACKBONE.NAME``:

* ``build_timm_fpn_backbone``: a hierarchical timm model (ConvNeXt, Swin) whose four stage
  outputs (strides 4, 8, 16, 32; named ``res2..res5`` after detectron2's ResNet so the FPN bases
  apply unchanged) feed detectron2's own ``FPN`` + ``LastLevelMaxPool`` (``p2..p6``).
* ``build_timm_vit_sfp_backbone``: a timm ViT (one stride-16 map, ``last_feat``) under
  detectron2's own ``SimpleFeaturePyramid`` (ViTDet: ``p2..p6`` from one map), optionally with
  ViTDet's window attention (``MODEL.TIMM.WINDOW_SIZE`` > 0) in every block except
  ``MODEL.TIMM.GLOBAL_BLOCKS``.

The timm network is held as ``.model`` (its own parameter names), so a converted file names
``backbone.bottom_up.model.<timm name>`` (FPN) or ``backbone.net.model.<timm name>`` (SFP).
Input: what detectron2 feeds a backbone, ``(N, 3, H, W)`` normalised with ``MODEL.PIXEL_MEAN/STD``
(0-255 statistics, RGB: the converter's ``.yaml`` sets both from the timm model's mean/std).
"""
from __future__ import annotations

import math
from typing import Dict, List, Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from detectron2.config import CfgNode
from detectron2.layers import ShapeSpec
from detectron2.modeling.backbone import BACKBONE_REGISTRY, FPN, Backbone
from detectron2.modeling.backbone.fpn import LastLevelMaxPool
from detectron2.modeling.backbone.vit import SimpleFeaturePyramid

from rdet.core.errors import ConfigError

FPN_BACKBONE, SFP_BACKBONE = "build_timm_fpn_backbone", "build_timm_vit_sfp_backbone"
# timm modules (where each family's model class lives) -> rdet's detection family.
_FAMILIES = {"timm.models.convnext": "hierarchical", "timm.models.swin_transformer": "hierarchical",
             "timm.models.vision_transformer": "vit"}
BACKBONE_FOR_FAMILY = {"hierarchical": FPN_BACKBONE, "vit": SFP_BACKBONE}


def add_timm_config(cfg: CfgNode) -> None:
    """rdet's ``MODEL.TIMM`` keys (added to detectron2's defaults by rdet's ``build_cfg``)."""
    cfg.MODEL.TIMM = CfgNode()
    cfg.MODEL.TIMM.ARCH = ""  # timm (or rdet registry) name, e.g. convnext_tiny, vit_base_patch16_224
    cfg.MODEL.TIMM.DROP_PATH_RATE = 0.0  # stochastic depth while training (ViTDet-B 0.1, Swin-T 0.2)
    cfg.MODEL.TIMM.OUT_FEATURES = ["res2", "res3", "res4", "res5"]  # hierarchical: stride 4..32 stages
    # ViT only. 0: global attention in every block (timm's own forward). > 0: ViTDet's window
    # attention (windows of WINDOW_SIZE x WINDOW_SIZE tokens, the class token dropped) in every
    # block but GLOBAL_BLOCKS (ViTDet-B: 14 and [2, 5, 8, 11]).
    cfg.MODEL.TIMM.WINDOW_SIZE = 0
    cfg.MODEL.TIMM.GLOBAL_BLOCKS = []
    cfg.MODEL.TIMM.SFP_SCALE_FACTORS = [4.0, 2.0, 1.0, 0.5]  # p2..p5 from the stride-16 map (+ p6 pooled)
    cfg.MODEL.TIMM.SFP_NORM = "LN"
    cfg.MODEL.TIMM.SQUARE_PAD = 0  # ViTDet pads every image to a 1024 square; 0: no square padding


def _rdet_spec(arch: str):
    """rdet's registry entry for ``arch`` (``None`` for a plain timm name)."""
    from rdet.backbones import BACKBONE_REGISTRY, get_spec

    return get_spec(arch) if arch in BACKBONE_REGISTRY else None


def timm_name(arch: str) -> str:
    """The timm model name for ``arch``: an rdet registry entry's ``timm_name`` (``swin_tiny`` ->
    ``swin_tiny_patch4_window7_224``), else ``arch`` itself (a timm name)."""
    spec = _rdet_spec(arch)
    return (getattr(spec, "timm_name", None) or arch) if spec is not None else arch


def timm_family(arch: str) -> Optional[str]:
    """``"hierarchical"`` (ConvNeXt, Swin), ``"vit"``, or ``None`` (not a timm model rdet detects with)."""
    import timm
    from timm.models import model_entrypoint

    if not arch:
        return None
    name = timm_name(arch)
    if not timm.is_model(name):
        return None
    return _FAMILIES.get(model_entrypoint(name).__module__)


def create_timm_net(arch: str, drop_path_rate: float = 0.0, num_classes: int = 1000) -> nn.Module:
    """A randomly initialised ``arch`` that accepts any input size (detection images vary): Swin
    builds its shifted-window masks per input and pads to whole windows; ViT resamples its
    position embedding (bicubic, as timm does for other resolutions) to the token grid.

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
    """A hierarchical timm model's stage outputs, ``res2..res5`` = strides 4..32, NCHW (Swin's
    NHWC tokens are permuted by timm's ``forward_intermediates``), before any final norm."""

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

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        feats = self.model.forward_intermediates(x, indices=self._indices, intermediates_only=True)
        return dict(zip(self._out_features, feats))


def _window_partition(x: torch.Tensor, ws: int):
    """``(B, H, W, C)`` -> ``(B * nW, ws * ws, C)`` windows, zero-padding H and W up to whole windows."""
    B, H, W, C = x.shape
    ph, pw = (ws - H % ws) % ws, (ws - W % ws) % ws
    x = F.pad(x, (0, 0, 0, pw, 0, ph))
    Hp, Wp = H + ph, W + pw
    x = x.view(B, Hp // ws, ws, Wp // ws, ws, C).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, ws * ws, C), (Hp, Wp)


def _window_unpartition(w: torch.Tensor, ws: int, padded, size, batch: int) -> torch.Tensor:
    (Hp, Wp), (H, W) = padded, size
    x = w.view(batch, Hp // ws, Wp // ws, ws, ws, -1).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(batch, Hp, Wp, -1)[:, :H, :W].contiguous()


class TimmViT(Backbone):
    """A timm ViT's last block output as one stride-``patch`` map ``last_feat`` (NCHW, before the
    final norm, as ViTDet's ViT). ``window_size`` 0 runs timm's own forward (global attention,
    class token kept): exactly timm's features. ``window_size`` > 0 is ViTDet's schedule on the
    same weights: no class token, position embedding resampled to the grid, each block except
    ``global_blocks`` attending within non-overlapping windows (zero-padded to whole windows, as
    ViTDet). timm's blocks are per-token except attention, so running a block on a batch of
    windows is window attention with the block's own weights. ViTDet's relative position biases
    have no counterpart in timm's weights and are not added."""

    def __init__(self, arch: str, window_size: int = 0, global_blocks: Sequence[int] = (),
                 drop_path_rate: float = 0.0):
        super().__init__()
        self.model = create_timm_net(arch, drop_path_rate)
        depth = len(self.model.blocks)
        bad = [b for b in global_blocks if not 0 <= b < depth]
        if bad:
            raise ConfigError(f"MODEL.TIMM.GLOBAL_BLOCKS {bad[0]}: {arch} has blocks 0..{depth - 1}")
        self.model.prune_intermediate_layers([depth - 1], prune_norm=True, prune_head=True)
        self.window_size, self.global_blocks = int(window_size), set(global_blocks)
        if self.window_size and getattr(self.model, "cls_token", None) is not None:
            self.model.cls_token.requires_grad_(False)  # unused with windows; kept so the file loads as is
        stride = self.model.patch_embed.patch_size[0]
        self._out_features = ["last_feat"]
        self._out_feature_strides = {"last_feat": stride}
        self._out_feature_channels = {"last_feat": self.model.embed_dim}

    @property
    def num_layers(self) -> int:
        return len(self.model.blocks)

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        if not self.window_size:
            return {"last_feat": self.model.forward_intermediates(x, indices=[self.num_layers - 1],
                                                                  intermediates_only=True)[0]}
        return {"last_feat": self._windowed(x)}

    def _windowed(self, x: torch.Tensor) -> torch.Tensor:
        from timm.layers import resample_abs_pos_embed

        m = self.model
        t = m.patch_embed(x)  # (B, h, w, C): dynamic_img_size keeps the grid
        B, h, w, C = t.shape
        if m.pos_embed is not None:
            prefix = 0 if m.no_embed_class else m.num_prefix_tokens
            pos = m.pos_embed[:, prefix:]  # the grid's entries (the class token's is dropped)
            t = t + resample_abs_pos_embed(pos, new_size=(h, w), old_size=m.patch_embed.grid_size,
                                           num_prefix_tokens=0).view(1, h, w, C)
        t = m.norm_pre(m.pos_drop(t))
        ws = self.window_size
        for i, blk in enumerate(m.blocks):
            if i in self.global_blocks:
                t = blk(t.view(B, h * w, C)).view(B, h, w, C)
            else:
                win, padded = _window_partition(t, ws)
                t = _window_unpartition(blk(win), ws, padded, (h, w), B)
        return t.permute(0, 3, 1, 2).contiguous()


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
    if weights_arch and not same_network(weights_arch, arch):
        raise ConfigError(f"MODEL.WEIGHTS holds a {weights_arch} backbone, but MODEL.TIMM.ARCH is {arch}")
    for key in ("mean", "std"):
        want = meta.get(key)
        have = list(getattr(cfg.MODEL, f"PIXEL_{key.upper()}"))
        if want and max(abs(255.0 * w - h) for w, h in zip(want, have)) > 1e-3:
            raise ConfigError(f"MODEL.PIXEL_{key.upper()} {have}: the weights expect "
                              f"{[round(255.0 * w, 4) for w in want]} (0-255, RGB; merge the converter's .yaml)")


@BACKBONE_REGISTRY.register()
def build_timm_fpn_backbone(cfg: CfgNode, input_shape: ShapeSpec) -> Backbone:
    """ConvNeXt / Swin stages (``MODEL.TIMM``) + detectron2's FPN (``MODEL.FPN``) -> p2..p6."""
    t = cfg.MODEL.TIMM
    bottom_up = TimmStages(t.ARCH, t.OUT_FEATURES, t.DROP_PATH_RATE)
    return FPN(bottom_up=bottom_up, in_features=cfg.MODEL.FPN.IN_FEATURES, out_channels=cfg.MODEL.FPN.OUT_CHANNELS,
               norm=cfg.MODEL.FPN.NORM, top_block=LastLevelMaxPool(), fuse_type=cfg.MODEL.FPN.FUSE_TYPE)


@BACKBONE_REGISTRY.register()
def build_timm_vit_sfp_backbone(cfg: CfgNode, input_shape: ShapeSpec) -> Backbone:
    """timm ViT (``MODEL.TIMM``) + detectron2's SimpleFeaturePyramid -> p2..p6 (ViTDet)."""
    t = cfg.MODEL.TIMM
    net = TimmViT(t.ARCH, t.WINDOW_SIZE, t.GLOBAL_BLOCKS, t.DROP_PATH_RATE)
    return SimpleFeaturePyramid(net=net, in_feature="last_feat", out_channels=cfg.MODEL.FPN.OUT_CHANNELS,
                                scale_factors=tuple(t.SFP_SCALE_FACTORS), top_block=LastLevelMaxPool(),
                                norm=t.SFP_NORM, square_pad=t.SQUARE_PAD)


def vit_num_layers(backbone: nn.Module) -> Optional[int]:
    """Blocks of the ViT inside a built SFP backbone (for layer-wise lr decay); ``None`` otherwise."""
    net = getattr(backbone, "net", None)
    return net.num_layers if isinstance(net, TimmViT) else None


def out_feature_names(family: str) -> List[str]:
    return ["last_feat"] if family == "vit" else ["res2", "res3", "res4", "res5"]
