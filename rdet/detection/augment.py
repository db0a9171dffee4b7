"""Large-scale jitter (LSJ), ViTDet's training augmentation, as a yacs option of the detection
data mapper (``INPUT.LSJ``): detectron2's yacs config has no key for it, only its LazyConfig
(``projects/ViTDet/configs/common/coco_loader_lsj.py``).

As the anchor: horizontal flip first, then ``ResizeScale`` (the image fitted into a
``IMAGE_SIZE`` square times a scale drawn uniformly from ``[MIN_SCALE, MAX_SCALE]``), then a random
``IMAGE_SIZE`` x ``IMAGE_SIZE`` crop without padding (the model pads to its square,
``MODEL.TIMM.SQUARE_PAD``); boxes are recomputed from the cropped masks when masks are on.
Test images are resized by the usual ``INPUT.MIN/MAX_SIZE_TEST`` (ViTDet: 1024 / 1024).
"""
from __future__ import annotations

from detectron2.config import CfgNode


def add_lsj_config(cfg: CfgNode) -> None:
    """``INPUT.LSJ`` keys (off by default; on in the ``*vit*`` recipes, as ViTDet)."""
    cfg.INPUT.LSJ = CfgNode()
    cfg.INPUT.LSJ.ENABLED = False  # replaces INPUT.MIN/MAX_SIZE_TRAIN resizing and RANDOM_FLIP while training
    cfg.INPUT.LSJ.IMAGE_SIZE = 1024  # ViTDet's square (pixels)
    cfg.INPUT.LSJ.MIN_SCALE = 0.1
    cfg.INPUT.LSJ.MAX_SCALE = 2.0


def lsj_augmentations(cfg: CfgNode) -> list:
    """The LSJ augmentation list for ``cfg.INPUT.LSJ``, in the anchor's order."""
    import detectron2.data.transforms as T

    s = cfg.INPUT.LSJ
    size = int(s.IMAGE_SIZE)
    return [T.RandomFlip(horizontal=True),
            T.ResizeScale(min_scale=s.MIN_SCALE, max_scale=s.MAX_SCALE, target_height=size, target_width=size),
            T.FixedSizeCrop(crop_size=(size, size), pad=False)]


def build_train_mapper(cfg: CfgNode):
    """detectron2's ``DatasetMapper`` for training: its own (``None``) unless ``INPUT.LSJ.ENABLED``,
    then with the LSJ augmentations and boxes recomputed from masks after cropping."""
    if not cfg.INPUT.LSJ.ENABLED:
        return None
    from detectron2.data import DatasetMapper

    kwargs = DatasetMapper.from_config(cfg, is_train=True)
    kwargs.update(augmentations=lsj_augmentations(cfg), recompute_boxes=bool(cfg.MODEL.MASK_ON))
    return DatasetMapper(**kwargs)


def check_lsj_config(cfg: CfgNode) -> None:
    """One-line :class:`~rdet.core.errors.ConfigError` for LSJ settings that cannot run."""
    from rdet.core.errors import ConfigError

    s = cfg.INPUT.LSJ
    if s.ENABLED and not (s.IMAGE_SIZE > 0 and 0 < s.MIN_SCALE <= s.MAX_SCALE):
        raise ConfigError(f"INPUT.LSJ: IMAGE_SIZE {s.IMAGE_SIZE} must be > 0 and 0 < MIN_SCALE {s.MIN_SCALE} "
                          f"<= MAX_SCALE {s.MAX_SCALE}")
    if s.ENABLED and cfg.MODEL.MASK_ON:
        import importlib.util

        if importlib.util.find_spec("shapely") is None:  # found mid-run otherwise, at the first polygon crop
            raise ConfigError("INPUT.LSJ with MODEL.MASK_ON crops polygon masks, which needs shapely: "
                              "pip install shapely")
