"""detectron2's ``DefaultTrainer`` with the evaluator chosen by the dataset's ``evaluator_type``
and the optimizer chosen by ``SOLVER.OPTIMIZER``.

Nothing in the training step is changed (so s/iter matches plain detectron2); rdet picks the
evaluator: COCO (boxes, and masks when MODEL.MASK_ON) with pycocotools' reference COCOeval, since
the fast C++ COCOeval needs detectron2's compiled extension, or Pascal VOC's 11-point/area AP.
The final evaluation is left to the caller (``Trainer.test(cfg, trainer.model)`` after
``train()``), so its results come back through the public API; ``TEST.EVAL_PERIOD`` still
evaluates during training.

detectron2's yacs solver builds SGD only; ConvNeXt, Swin and ViT are fine-tuned with AdamW
(ViTDet, Swin and ConvNeXt detection recipes), ViT and ConvNeXt with layer-wise lr decay.
``SOLVER.OPTIMIZER adamw`` builds it from the same ``SOLVER`` keys (BASE_LR, WEIGHT_DECAY,
WEIGHT_DECAY_NORM, BIAS_LR_FACTOR, WEIGHT_DECAY_BIAS, CLIP_GRADIENTS) plus rdet's
``SOLVER.BETAS`` and ``SOLVER.LAYER_DECAY`` (as each backbone's recipe decays it:
``rdet.detection.timm_backbones.layer_decay_rate``). Position embeddings (ViTDet), Swin's relative position tables and ConvNeXt's layer scales (their
detection recipes) get no weight decay. ``INPUT.LSJ``: ViTDet's large-scale jitter in the training
loader (rdet.detection.augment).
"""
from __future__ import annotations

import contextlib
import functools
import os
from typing import Iterator

import torch
from detectron2.data import MetadataCatalog
from detectron2.engine import DefaultTrainer, hooks
from detectron2.evaluation import COCOEvaluator, PascalVOCDetectionEvaluator
from detectron2.utils import comm

import rdet.detection.timm_backbones  # noqa: F401 - registers the timm backbones with detectron2
from rdet.core.errors import ConfigError, DatasetError

def add_optimizer_config(cfg) -> None:
    """rdet's ``SOLVER`` keys beside detectron2's (added by rdet's ``build_cfg``)."""
    cfg.SOLVER.OPTIMIZER = "sgd"  # or "adamw" (one spelling with classification: the schema's rule)
    cfg.SOLVER.BETAS = (0.9, 0.999)  # AdamW
    cfg.SOLVER.LAYER_DECAY = 1.0  # < 1: layer-wise lr decay (ViT: ViTDet-B 0.7; ConvNeXt: its recipe's 0.95)
    # ConvNeXt's two recipes: "layer" (its detection recipe's layer_wise groups) or "stage" (its
    # segmentation recipe's stage_wise: stem and downsampling layers, then one group per stage)
    cfg.SOLVER.LAYER_DECAY_MODE = "layer"


def check_optimizer_config(cfg) -> None:
    """One-line :class:`ConfigError` for solver keys rdet cannot build, before any work starts."""
    from rdet.config.schema import check_detection_cfg

    s = cfg.SOLVER
    check_detection_cfg(cfg)  # each rdet key's rule, as for every other config
    tb = rdet.detection.timm_backbones
    name = cfg.MODEL.BACKBONE.NAME
    if name == "build_bottom_up_backbone":  # UperNet: the stages of the FPN backbone BOTTOM_UP.FROM builds
        name = cfg.MODEL.BOTTOM_UP.FROM
    kind = tb.timm_kind(cfg.MODEL.TIMM.ARCH) if name in (tb.SFP_BACKBONE, tb.FPN_BACKBONE) else None
    if s.LAYER_DECAY != 1.0 and kind not in ("vit", "convnext"):
        raise ConfigError(f"SOLVER.LAYER_DECAY {s.LAYER_DECAY}: layer-wise decay is for ViT and ConvNeXt "
                          "backbones (their detection recipes); set 1.0")
    if s.LAYER_DECAY != 1.0 and s.LAYER_DECAY_MODE == "stage" and kind != "convnext":
        raise ConfigError("SOLVER.LAYER_DECAY_MODE stage: stage-wise decay is ConvNeXt's segmentation recipe; "
                          f"a {kind} backbone decays by layer")
    if s.OPTIMIZER == "sgd" and tuple(s.BETAS) != (0.9, 0.999):
        raise ConfigError("SOLVER.BETAS is for SOLVER.OPTIMIZER adamw; sgd uses SOLVER.MOMENTUM")
    if len(s.BETAS) != 2:
        raise ConfigError(f"SOLVER.BETAS {tuple(s.BETAS)}: two numbers in [0, 1)")


class Trainer(DefaultTrainer):
    @classmethod
    def build_optimizer(cls, cfg, model):
        if cfg.SOLVER.OPTIMIZER == "sgd":
            return super().build_optimizer(cfg, model)
        return build_adamw(cfg, model)

    @classmethod
    def build_train_loader(cls, cfg):
        """detectron2's loader, with ViTDet's large-scale jitter when ``INPUT.LSJ.ENABLED``."""
        from detectron2.data import build_detection_train_loader

        from rdet.detection.augment import build_train_mapper

        return build_detection_train_loader(cfg, mapper=build_train_mapper(cfg))

    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_folder=None):
        kind = getattr(MetadataCatalog.get(dataset_name), "evaluator_type", None)
        if kind == "coco":
            out = output_folder or os.path.join(cfg.OUTPUT_DIR, "inference", dataset_name)
            tasks = ("bbox", "segm") if cfg.MODEL.MASK_ON else ("bbox",)
            return COCOEvaluator(dataset_name, tasks=tasks, distributed=True, output_dir=out, use_fast_impl=False)
        if kind == "pascal_voc":
            return PascalVOCDetectionEvaluator(dataset_name)
        raise DatasetError(f"{dataset_name}: no evaluator for evaluator_type {kind!r} (coco and pascal_voc supported)")

    def build_hooks(self):
        """detectron2's hooks, with its evaluation hook kept for ``TEST.EVAL_PERIOD`` only (not
        after the last iteration: the caller evaluates the final model once)."""
        ret = super().build_hooks()
        periodic = hooks.EvalHook(self.cfg.TEST.EVAL_PERIOD, lambda: self.test(self.cfg, self.model),
                                  eval_after_train=False)
        return [periodic if isinstance(h, hooks.EvalHook) else h for h in ret]


@contextlib.contextmanager
def ddp_on_cpu() -> Iterator[None]:
    """While building a :class:`Trainer` with several processes and no CUDA: detectron2's
    ``create_ddp_model`` passes ``device_ids=[local_rank]``, which DistributedDataParallel rejects
    for CPU modules, so ``device_ids=None`` is passed instead (``--num-gpus N`` then trains in N
    gloo processes on CPU, for tests and debugging). Does nothing with CUDA or one process."""
    import detectron2.engine.defaults as defaults

    if torch.cuda.is_available() or comm.get_world_size() == 1:
        yield
        return
    original = defaults.create_ddp_model
    defaults.create_ddp_model = functools.partial(original, device_ids=None)
    try:
        yield
    finally:
        defaults.create_ddp_model = original


def build_adamw(cfg, model: torch.nn.Module) -> torch.optim.Optimizer:
    """AdamW over detectron2's parameter groups (norm / bias weight decay and lr factors from
    ``SOLVER``), with layer-wise lr decay for a ViT backbone and detectron2's gradient clipping."""
    from detectron2.solver.build import get_default_optimizer_params, maybe_add_gradient_clipping

    from rdet.detection.timm_backbones import layer_decay_rate

    s = cfg.SOLVER
    net = model.module if hasattr(model, "module") else model  # DistributedDataParallel
    lr_factor = layer_decay_rate(net.backbone, s.LAYER_DECAY, s.LAYER_DECAY_MODE) if s.LAYER_DECAY != 1.0 else None
    params = get_default_optimizer_params(
        model, base_lr=s.BASE_LR, weight_decay=s.WEIGHT_DECAY, weight_decay_norm=s.WEIGHT_DECAY_NORM,
        bias_lr_factor=s.BIAS_LR_FACTOR, weight_decay_bias=s.WEIGHT_DECAY_BIAS, lr_factor_func=lr_factor,
        overrides={"pos_embed": {"weight_decay": 0.0}, "cls_token": {"weight_decay": 0.0},
                   # Swin's detection recipe (mmdet paramwise_cfg custom_keys) decays no position tables
                   "relative_position_bias_table": {"weight_decay": 0.0},
                   # ConvNeXt's decays no 1-D tensor: its layer scales (timm's ``gamma``) with the norms and biases
                   "gamma": {"weight_decay": 0.0}})
    return maybe_add_gradient_clipping(cfg, torch.optim.AdamW)(params, lr=s.BASE_LR, betas=tuple(s.BETAS))
