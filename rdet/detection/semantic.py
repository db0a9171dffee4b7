"""Semantic segmentation in the detection trainer: when ``MODEL.META_ARCHITECTURE`` is detectron2's
``SemanticSegmentor``, ``tools/train_det.py`` trains it with this module's data mapper, evaluator,
learning-rate schedule and record, and everything else (launch, checkpoints, resume, logs) as
for detection.

Heads: detectron2's Semantic FPN (``SemSegFPNHead``), DeepLabV3+ (``detectron2.projects.deeplab``:
``DeepLabV3PlusHead`` on ``build_resnet_deeplab_backbone``, a dilated res5; with global image
pooling, :mod:`rdet.detection.deeplab`) and rdet's UperNet (:mod:`rdet.detection.upernet`).
Evaluation: detectron2's ``SemSegEvaluator`` (mIoU, fwIoU, mean and pixel accuracy, per-class
IoU) on every semantic dataset, Cityscapes included.
"""
from __future__ import annotations

import copy
from typing import Any, Dict, List, Optional

import numpy as np
import torch

# Registers DeepLabV3(+) heads and the dilated ResNet backbone with detectron2's registries.
import detectron2.projects.deeplab  # noqa: F401
import rdet.detection.deeplab  # noqa: F401 - registers DeepLabV3PlusGlobalPoolHead
import rdet.detection.upernet  # noqa: F401 - registers UperNetHead and build_bottom_up_backbone
from rdet.core.errors import ConfigError
from rdet.detection.trainer import Trainer

META_ARCHITECTURE = "SemanticSegmentor"
DEEPLAB_BACKBONE = "build_resnet_deeplab_backbone"


def is_semantic(cfg) -> bool:
    return cfg.MODEL.META_ARCHITECTURE == META_ARCHITECTURE


def add_semantic_config(cfg) -> None:
    """detectron2's DeepLab keys (crop area constraint, poly schedule, ASPP, dilated res5) and
    rdet's UperNet / bottom-up keys, beside the detection defaults (added by ``build_cfg``)."""
    from detectron2.projects.deeplab import add_deeplab_config

    from rdet.detection.upernet import add_upernet_config

    add_deeplab_config(cfg)
    add_upernet_config(cfg)


def as_built(cfg):
    """The config with ``MODEL.BACKBONE.NAME`` the backbone actually built: UperNet's
    ``build_bottom_up_backbone`` builds ``MODEL.BOTTOM_UP.FROM`` and keeps its stages, so the
    timm checks (arch, statistics) apply to that name."""
    from rdet.detection.upernet import BOTTOM_UP_BACKBONE

    if cfg.MODEL.BACKBONE.NAME != BOTTOM_UP_BACKBONE:
        return cfg
    c = cfg.clone()
    c.defrost()
    c.MODEL.BACKBONE.NAME = cfg.MODEL.BOTTOM_UP.FROM
    return c


def keep_stage_backbone(cfg, before: str) -> None:
    """After a converter's ``.yaml`` named its FPN builder (``MODEL.BACKBONE.NAME``) over a config
    whose backbone was ``before``: if that was UperNet's ``build_bottom_up_backbone``, the
    converter's builder becomes ``MODEL.BOTTOM_UP.FROM`` (the stages it builds) and the
    config's backbone stays."""
    from rdet.detection.upernet import BOTTOM_UP_BACKBONE

    if before == BOTTOM_UP_BACKBONE and cfg.MODEL.BACKBONE.NAME != before:
        cfg.MODEL.BOTTOM_UP.FROM = cfg.MODEL.BACKBONE.NAME
        cfg.MODEL.BACKBONE.NAME = before


def check_semantic_config(cfg, arch: Optional[str]) -> None:
    """One-line :class:`ConfigError` for a semantic config that cannot run: a DeepLab backbone
    on a ResNet without Bottleneck blocks (detectron2 builds its dilated res5 from them), a crop
    that does not divide by the output stride DeepLab's image pooling needs, an ignore value
    that is a class. ``arch``: the converted backbone's (``None``: not known)."""
    from rdet.backbones import get_spec

    h = cfg.MODEL.SEM_SEG_HEAD
    if not 0 <= h.IGNORE_VALUE <= 255 or h.IGNORE_VALUE < h.NUM_CLASSES:
        raise ConfigError(f"MODEL.SEM_SEG_HEAD.IGNORE_VALUE {h.IGNORE_VALUE}: must be in [NUM_CLASSES, 255] "
                          f"(NUM_CLASSES {h.NUM_CLASSES}; label PNGs hold 8-bit values)")
    if cfg.MODEL.BACKBONE.NAME == DEEPLAB_BACKBONE:
        depth = cfg.MODEL.RESNETS.DEPTH
        d2 = get_spec(arch).d2 if arch else None
        if depth < 50 or (d2 is not None and d2.depth < 50):
            raise ConfigError(f"MODEL.BACKBONE.NAME {DEEPLAB_BACKBONE} needs a Bottleneck ResNet (depth >= 50), "
                              f"not {arch or f'depth {depth}'}")
    if cfg.INPUT.CROP.ENABLED:
        if cfg.INPUT.CROP.TYPE != "absolute":
            raise ConfigError(f"INPUT.CROP.TYPE {cfg.INPUT.CROP.TYPE!r}: semantic segmentation crops are "
                              "'absolute' (pixels), as DeepLab's image pooling needs a fixed size")
        if h.NAME.startswith("DeepLab") and any(s % 32 for s in cfg.INPUT.CROP.SIZE):
            raise ConfigError(f"INPUT.CROP.SIZE {list(cfg.INPUT.CROP.SIZE)}: DeepLab's image pooling needs a "
                              "multiple of 32")


def cpu_norms(cfg) -> None:
    """On CPU, ``SyncBN`` (torch's SyncBatchNorm, CUDA only across processes) becomes detectron2's
    ``naiveSyncBN``: the same statistics over all processes, all-reduced through gloo."""
    for node, key in ((cfg.MODEL.RESNETS, "NORM"), (cfg.MODEL.SEM_SEG_HEAD, "NORM"), (cfg.MODEL.FPN, "NORM")):
        if node[key] == "SyncBN":
            node[key] = "naiveSyncBN"


class SemSegMapper:
    """A dataset dict -> the model's input: the image (``INPUT.FORMAT``, 0-255, CHW float) and its
    label map (``sem_seg``, HW long: class index, or the ignore value) under the same geometric
    augmentation. Labels are read as stored (palette / index PNGs hold the class in the pixel),
    not converted to luminance as detectron2's ``DatasetMapper`` does (``"L"``), which would turn
    a Pascal VOC palette index into a grey level.

    Training: detectron2's semantic recipe (DeepLab's ``build_sem_seg_train_aug``): resize the
    short side to one of ``INPUT.MIN_SIZE_TRAIN`` (long side at most ``MAX_SIZE_TRAIN``), crop
    ``INPUT.CROP.SIZE`` with no class over ``SINGLE_CATEGORY_MAX_AREA`` of it (mmsegmentation's
    ``cat_max_ratio`` 0.75), horizontal flip. A resized image smaller than the crop is padded to it
    (image with 0, labels with the ignore value) as mmsegmentation does, so every training input
    has the crop's size (which DeepLab's fixed-window image pooling expects).
    Testing: the short side resized to ``MIN_SIZE_TEST``; evaluation compares at the file's size."""

    def __init__(self, cfg, is_train: bool = True):
        from detectron2.data import transforms as T

        self.is_train = is_train
        self.format = cfg.INPUT.FORMAT
        self.ignore = cfg.MODEL.SEM_SEG_HEAD.IGNORE_VALUE
        if is_train:
            augs = [T.ResizeShortestEdge(cfg.INPUT.MIN_SIZE_TRAIN, cfg.INPUT.MAX_SIZE_TRAIN,
                                         cfg.INPUT.MIN_SIZE_TRAIN_SAMPLING)]
            self.crop = tuple(cfg.INPUT.CROP.SIZE) if cfg.INPUT.CROP.ENABLED else None
            if self.crop:
                augs.append(T.RandomCrop_CategoryAreaConstraint(
                    "absolute", self.crop, cfg.INPUT.CROP.SINGLE_CATEGORY_MAX_AREA, self.ignore))
            augs.append(T.RandomFlip())
        else:
            self.crop = None
            size = cfg.INPUT.MIN_SIZE_TEST  # 0: images as they are (detectron2's convention)
            augs = [T.ResizeShortestEdge(size, cfg.INPUT.MAX_SIZE_TEST, "choice")] if size else []
        self.augs = T.AugmentationList(augs)

    def __call__(self, dataset_dict: Dict[str, Any]) -> Dict[str, Any]:
        from detectron2.data import detection_utils as utils
        from detectron2.data import transforms as T

        d = copy.deepcopy(dataset_dict)
        image = utils.read_image(d["file_name"], format=self.format)
        d.setdefault("height", image.shape[0])  # the size predictions are returned at (the file's)
        d.setdefault("width", image.shape[1])
        label = read_label(d.pop("sem_seg_file_name")) if self.is_train else None
        aug = T.AugInput(image, sem_seg=label)
        self.augs(aug)
        image, label = aug.image, aug.sem_seg
        if self.crop:  # a resized image smaller than the crop: pad it to the crop
            image, label = _pad_to(image, label, self.crop, self.ignore)
        d["image"] = torch.as_tensor(np.ascontiguousarray(image.transpose(2, 0, 1)))
        if label is not None:
            d["sem_seg"] = torch.as_tensor(label.astype("long"))
        return d


def read_label(path: str) -> np.ndarray:
    """A label PNG's stored values, HxW uint8 (palette index or grey value, never a luminance)."""
    from PIL import Image

    with Image.open(path) as im:
        return np.array(im, dtype=np.uint8)


def _pad_to(image: np.ndarray, label: np.ndarray, crop, ignore: int):
    """Pad bottom/right up to the crop size (image with 0, label with ``ignore``)."""
    h, w = label.shape
    ph, pw = max(crop[0] - h, 0), max(crop[1] - w, 0)
    if ph or pw:
        image = np.pad(image, ((0, ph), (0, pw), (0, 0)))
        label = np.pad(label, ((0, ph), (0, pw)), constant_values=ignore)
    return image, label


def build_semantic_train_loader(cfg):
    from detectron2.data import build_detection_train_loader

    return build_detection_train_loader(cfg, mapper=SemSegMapper(cfg, True))


def build_semantic_test_loader(cfg, dataset_name: str):
    from detectron2.data import build_detection_test_loader

    return build_detection_test_loader(cfg, dataset_name, mapper=SemSegMapper(cfg, False))


def build_semantic_evaluator(cfg, dataset_name: str, output_folder: Optional[str] = None):
    """detectron2's ``SemSegEvaluator`` (confusion matrix over all processes; predictions and the
    metrics written under ``OUTPUT_DIR/inference/<dataset>``), reading labels with :func:`load_label`."""
    import os

    from detectron2.evaluation import SemSegEvaluator

    out = output_folder or os.path.join(cfg.OUTPUT_DIR, "inference", dataset_name)
    return SemSegEvaluator(dataset_name, distributed=True, output_dir=out, sem_seg_loading_fn=load_label)


def load_label(path: str, dtype=int) -> np.ndarray:
    """A ground-truth label as ``SemSegEvaluator`` wants it: stored values (palette indices as
    they are). detectron2's own loader asks NumPy 2 for ``copy=False``, which PIL images refuse."""
    return read_label(path).astype(dtype)


def build_poly_lr_scheduler(cfg, optimizer):
    """``SOLVER.LR_SCHEDULER_NAME "WarmupPolyLR"``: lr x (1 - iter / MAX_ITER) ** POLY_LR_POWER
    after warm-up (DeepLab, and mmsegmentation's schedule for Semantic FPN and UperNet); other
    names go to detectron2's builder."""
    from detectron2.projects.deeplab import build_lr_scheduler

    return build_lr_scheduler(cfg, optimizer)


class SemanticTrainer(Trainer):
    """rdet's detection :class:`~rdet.detection.trainer.Trainer` (optimizers, hooks, CPU DDP) with
    the semantic mapper, ``SemSegEvaluator`` and the poly schedule; the training step is detectron2's."""

    @classmethod
    def build_model(cls, cfg):
        model = super().build_model(cfg)
        pad_pyramid_input(model.backbone)
        return model

    @classmethod
    def build_train_loader(cls, cfg):
        return build_semantic_train_loader(cfg)

    @classmethod
    def build_test_loader(cls, cfg, dataset_name):
        return build_semantic_test_loader(cfg, dataset_name)

    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_folder=None):
        return build_semantic_evaluator(cfg, dataset_name, output_folder)

    @classmethod
    def build_lr_scheduler(cls, cfg, optimizer):
        return build_poly_lr_scheduler(cfg, optimizer)


def pad_pyramid_input(backbone) -> None:
    """Make a ``SimpleFeaturePyramid`` (ViT) backbone pad its input to its coarsest stride, as
    detectron2's FPN does. Its ``padding_constraints`` spell the key ``"size_divisiblity"``, which
    ``ImageList.from_tensors`` does not read, so without a square pad (ViTDet's detection recipe)
    nothing is padded, p5 of a size that is not a multiple of 32 rounds up, and Semantic FPN's
    sum of the upsampled levels fails. The backbone's class is swapped for a subclass whose
    ``size_divisibility`` says the stride; parameters and names stay as they are."""
    from detectron2.modeling.backbone.vit import SimpleFeaturePyramid

    if not isinstance(backbone, SimpleFeaturePyramid) or backbone.size_divisibility:
        return
    stride = max(s.stride for s in backbone.output_shape().values())
    cls = type(backbone)
    backbone.__class__ = type(f"Padded{cls.__name__}", (cls,), {"size_divisibility": property(lambda self: stride)})


def trainer_class(cfg):
    """The trainer for a config: :class:`SemanticTrainer` for ``SemanticSegmentor``, else detection's."""
    return SemanticTrainer if is_semantic(cfg) else Trainer


def _num(v) -> Optional[float]:
    return None if v is None or v != v else float(v)  # NaN (class absent from the ground truth) -> None


def semantic_metrics(cfg, results: Dict) -> Dict[str, Any]:
    """The record's segmentation fields from ``SemSegEvaluator``'s results (percent)."""
    from detectron2.data import MetadataCatalog

    res = results.get("sem_seg", {})
    names: List[str] = []
    for d in cfg.DATASETS.TEST[:1]:
        names = list(getattr(MetadataCatalog.get(d), "stuff_classes", []))
    return {"mIoU": _num(res.get("mIoU")), "fwIoU": _num(res.get("fwIoU")), "mACC": _num(res.get("mACC")),
            "pixel_accuracy": _num(res.get("pACC")), "classes": names,  # label order (records sort their keys)
            "per_class_IoU": {n: _num(res.get(f"IoU-{n}")) for n in names} if res else {}}


def semantic_record_fields(cfg) -> Dict[str, Any]:
    """What a segmentation record says about the run besides its metrics."""
    crop = list(cfg.INPUT.CROP.SIZE) if cfg.INPUT.CROP.ENABLED else None
    head = cfg.MODEL.SEM_SEG_HEAD.NAME
    return {"task": "segmentation", "meta_architecture": f"{cfg.MODEL.META_ARCHITECTURE}/{head}",
            "head": head, "num_classes": cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES, "crop_size": crop,
            "test_size": cfg.INPUT.MIN_SIZE_TEST, "ims_per_batch": cfg.SOLVER.IMS_PER_BATCH}
