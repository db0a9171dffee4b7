"""detectron2's ``DefaultTrainer`` with the evaluator chosen by the dataset's ``evaluator_type``.

Nothing in the training step is changed (so s/iter matches plain detectron2); rdet picks the
evaluator: COCO (boxes, and masks when MODEL.MASK_ON) with pycocotools' reference COCOeval, since
the fast C++ COCOeval needs detectron2's compiled extension, or Pascal VOC's 11-point/area AP.
The final evaluation is left to the caller (``Trainer.test(cfg, trainer.model)`` after
``train()``), so its results come back through the public API; ``TEST.EVAL_PERIOD`` still
evaluates during training.
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

from rdet.core.errors import DatasetError


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
