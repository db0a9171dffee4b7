"""detectron2's ``DefaultTrainer`` with the evaluator chosen by the dataset's ``evaluator_type``.

Nothing in the training step is changed (so s/iter matches plain detectron2); rdet only picks the
evaluator: COCO (boxes, and masks when MODEL.MASK_ON) with pycocotools' reference COCOeval, since
the fast C++ COCOeval needs detectron2's compiled extension, or Pascal VOC's 11-point/area AP.
"""
from __future__ import annotations

import os

import torch
from detectron2.data import MetadataCatalog
from detectron2.engine import DefaultTrainer
from detectron2.evaluation import COCOEvaluator, PascalVOCDetectionEvaluator

from rdet.errors import DatasetError


class Trainer(DefaultTrainer):
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


def patch_ddp_for_cpu() -> None:
    """detectron2's ``create_ddp_model`` always passes ``device_ids=[local_rank]``, which
    DistributedDataParallel rejects for CPU modules. Without CUDA, pass ``device_ids=None`` so
    ``--num-gpus N`` runs N gloo processes on CPU (for tests and debugging)."""
    import detectron2.engine.defaults as defaults

    if torch.cuda.is_available() or getattr(defaults.create_ddp_model, "_rdet_cpu", False):
        return
    original = defaults.create_ddp_model

    def create_ddp_model(model, *, fp16_compression=False, **kwargs):
        kwargs.setdefault("device_ids", None)
        return original(model, fp16_compression=fp16_compression, **kwargs)

    create_ddp_model._rdet_cpu = True
    defaults.create_ddp_model = create_ddp_model
