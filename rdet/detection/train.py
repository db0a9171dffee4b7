"""Train and evaluate Faster/Mask R-CNN from a converted backbone: detectron2's own trainer,
config and launcher, plus rdet's checks, CPU fallback and result record.

``setup`` builds the config (file, ``KEY VALUE`` overrides, CPU fallback) and validates the user's
inputs in the launching process, so bad input is a one-line error before any worker starts.
``train_worker`` is what ``launch`` runs in each process.
"""
from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any, Dict, Optional, Sequence

import torch

from rdet.detection.datasets import check_datasets, data_note, register_demo_dataset
from rdet.errors import CheckpointError, ConfigError
from rdet.records import write_record

logger = logging.getLogger("rdet.detection")


def build_cfg(config_file: str, opts: Sequence[str] = ()):
    from detectron2.config import get_cfg

    if not config_file or not os.path.isfile(config_file):
        raise ConfigError(f"{config_file}: no such config file")
    cfg = get_cfg()
    cfg.RDET = type(cfg)()  # rdet's own keys (schedule name for the record)
    cfg.RDET.SCHEDULE = ""
    try:
        cfg.merge_from_file(config_file)
        if opts:
            if len(opts) % 2:
                raise ConfigError(f"overrides come in KEY VALUE pairs, got: {' '.join(opts)}")
            cfg.merge_from_list(list(opts))
    except (KeyError, ValueError, AssertionError, TypeError) as e:
        raise ConfigError(f"{config_file}: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    if cfg.MODEL.DEVICE.startswith("cuda") and not torch.cuda.is_available():
        logging.getLogger("rdet").warning("CUDA is not available: training on CPU (MODEL.DEVICE cpu)")
        print("rdet: CUDA is not available, falling back to MODEL.DEVICE cpu")
        cfg.MODEL.DEVICE = "cpu"
    return cfg


def check_inputs(cfg, eval_only: bool = False) -> None:
    w = cfg.MODEL.WEIGHTS
    if w and "://" not in w and not os.path.isfile(w):
        raise CheckpointError(f"MODEL.WEIGHTS {w}: no such file (convert a backbone with tools/convert_backbone.py)")
    check_datasets(list(cfg.DATASETS.TEST) + ([] if eval_only else list(cfg.DATASETS.TRAIN)))


def setup(config_file: str, opts: Sequence[str] = (), eval_only: bool = False):
    cfg = build_cfg(config_file, opts)
    check_inputs(cfg, eval_only)
    return cfg


def _ap(results: Dict, task: str, key: str) -> Optional[float]:
    v = results.get(task, {}).get(key)
    return None if v is None or v != v else float(v)  # NaN (no detections of a class) -> None


def make_record(cfg, results: Dict, wall_time: float) -> Dict[str, Any]:
    from rdet.convert import read_converted_meta

    meta = read_converted_meta(cfg.MODEL.WEIGHTS) if cfg.MODEL.WEIGHTS else {}
    task = "instance_segmentation" if cfg.MODEL.MASK_ON else "detection"
    return {"task": "detection", "detection_task": task, "dataset": ",".join(cfg.DATASETS.TEST),
            "train_datasets": list(cfg.DATASETS.TRAIN), "data_note": data_note(list(cfg.DATASETS.TEST)),
            "backbone": {"arch": meta.get("arch"), "norm": meta.get("norm"), "eps": meta.get("eps"),
                         "source": meta.get("source", cfg.MODEL.WEIGHTS)},
            "meta_architecture": f"{cfg.MODEL.META_ARCHITECTURE}/{cfg.MODEL.ROI_HEADS.NAME}",
            "box_AP": _ap(results, "bbox", "AP"), "box_AP50": _ap(results, "bbox", "AP50"),
            "box_AP75": _ap(results, "bbox", "AP75"),
            "mask_AP": _ap(results, "segm", "AP") if cfg.MODEL.MASK_ON else None,
            "iterations": cfg.SOLVER.MAX_ITER, "schedule": cfg.RDET.SCHEDULE or f"{cfg.SOLVER.MAX_ITER} iters",
            "seed": cfg.SEED, "wall_time_s": wall_time}


def train_worker(config_file: str, opts: Sequence[str], resume: bool, eval_only: bool) -> Dict[str, Any]:
    """Runs in every process ``launch`` starts."""
    from detectron2.checkpoint import DetectionCheckpointer
    from detectron2.engine import default_setup
    from detectron2.utils import comm

    from rdet.detection.trainer import Trainer, patch_ddp_for_cpu

    start = time.time()
    patch_ddp_for_cpu()
    cfg = build_cfg(config_file, opts)
    if any(n.startswith("rdet_fashion_det") for n in list(cfg.DATASETS.TRAIN) + list(cfg.DATASETS.TEST)):
        register_demo_dataset()
    cfg.freeze()
    default_setup(cfg, _Args(config_file, opts, resume, eval_only))
    if eval_only:
        model = Trainer.build_model(cfg)
        DetectionCheckpointer(model, save_dir=cfg.OUTPUT_DIR).resume_or_load(cfg.MODEL.WEIGHTS, resume=resume)
        results = Trainer.test(cfg, model)
    else:
        trainer = Trainer(cfg)
        trainer.resume_or_load(resume=resume)
        trainer.train()
        # DefaultTrainer's final EvalHook keeps its results here (train() returns them only when
        # TEST.EXPECTED_RESULTS is set); no test set configured -> no results.
        results = getattr(trainer, "_last_eval_results", None) or {}
    record = make_record(cfg, results, time.time() - start)
    if comm.is_main_process():
        write_record(Path(cfg.OUTPUT_DIR), record)
    return record


class _Args:
    """What ``default_setup`` reads from an argparse namespace."""

    def __init__(self, config_file, opts, resume, eval_only):
        self.config_file, self.opts, self.resume, self.eval_only = config_file, list(opts), resume, eval_only


def run(config_file: str, opts: Sequence[str] = (), resume: bool = False, eval_only: bool = False,
        num_gpus: int = 1, num_machines: int = 1, machine_rank: int = 0, dist_url: str = "auto") -> Dict[str, Any]:
    """Validate, then train (or evaluate) in ``num_gpus`` x ``num_machines`` processes; returns the
    record (also in ``OUTPUT_DIR/result.json``)."""
    from detectron2.engine import launch

    cfg = setup(config_file, opts, eval_only)
    if num_gpus > 1 or num_machines > 1:
        launch(train_worker, num_gpus, num_machines=num_machines, machine_rank=machine_rank, dist_url=dist_url,
               args=(config_file, list(opts), resume, eval_only))
        from rdet.records import read_record

        return read_record(Path(cfg.OUTPUT_DIR) / "result.json")
    return train_worker(config_file, opts, resume, eval_only)
