"""Train and evaluate Faster/Mask R-CNN from a converted backbone: detectron2's own trainer,
config and launcher, plus rdet's checks, CPU fallback and result record.

``setup`` builds the config (file, ``KEY VALUE`` overrides, CPU fallback) and checks every input
in the launching process (config, output folder, what ``MODEL.WEIGHTS`` holds, datasets), so bad
input is a one-line error before any worker starts and before detectron2 writes a file.
``train_worker`` is what ``launch`` runs in each process.
"""
from __future__ import annotations

import argparse
import logging
import os
import time
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Tuple

import torch

from rdet.detection.datasets import check_datasets, data_note, register_demo_dataset
from rdet.detection.groups import release_process_groups
from rdet.detection.recipe import schedule_name
from rdet.tasks.checks import check_output_dir
from rdet.detection.weights import BACKBONE_KEYS, WeightsInfo, inspect_weights
from rdet.core.collector import settle
from rdet.core.errors import CheckpointError, ConfigError
from rdet.core.records import read_record, write_record

logger = logging.getLogger(__name__)


def build_cfg(config_file: str, opts: Sequence[str] = (), backbone_config: Optional[str] = None):
    """detectron2's defaults + rdet's ``RDET`` keys, then the file, then ``KEY VALUE`` overrides,
    then ``backbone_config``: the ``MODEL`` section (less ``MODEL.WEIGHTS``) of the config a
    converter wrote beside its weights (pixel mean/std; the ResNet depth, widths and groups, or
    the timm backbone and arch), so a config written for one backbone runs the one it is given."""
    import yaml
    from detectron2.config import CfgNode, get_cfg

    if not config_file or not os.path.isfile(config_file):
        raise ConfigError(f"{config_file}: no such config file")
    flags = [o for o in opts if str(o).startswith("--")]
    if flags:  # detectron2's parser reads everything from the first KEY on as overrides
        raise ConfigError(f"{flags[0]} follows KEY VALUE overrides: put flags before the overrides")
    cfg = get_cfg()
    cfg.RDET = CfgNode()
    cfg.RDET.SCHEDULE = ""  # the schedule's name for the record (1x, 3x, demo-300): recipe.schedule_name
    # Written by rdet from MODEL.WEIGHTS (config.yaml keeps them, so --eval-only on this run's
    # model_final.pth can name the backbone); values given in a config are replaced.
    cfg.RDET.BACKBONE = CfgNode({k.upper(): None for k in BACKBONE_KEYS})
    from rdet.detection.timm_backbones import add_timm_config
    from rdet.detection.trainer import add_optimizer_config

    add_timm_config(cfg)  # MODEL.TIMM: ConvNeXt / Swin / ViT backbones
    add_optimizer_config(cfg)  # SOLVER.OPTIMIZER, BETAS, LAYER_DECAY (AdamW, layer-wise decay)
    from rdet.detection.semantic import add_semantic_config

    add_semantic_config(cfg)  # DeepLab's keys (crop constraint, poly lr, ASPP, dilation), UperNet's
    try:
        cfg.merge_from_file(config_file)
        if opts:
            if len(opts) % 2:
                raise ConfigError(f"overrides come in KEY VALUE pairs, got: {' '.join(opts)}")
            cfg.merge_from_list(list(opts))
        if backbone_config:
            model = dict(yaml.safe_load(Path(backbone_config).read_text())["MODEL"])
            model.pop("WEIGHTS", None)
            stages = cfg.MODEL.BACKBONE.NAME
            cfg.merge_from_other_cfg(CfgNode({"MODEL": model}))
            from rdet.detection.semantic import keep_stage_backbone

            keep_stage_backbone(cfg, stages)  # UperNet: the converter's FPN builder gives the stages
    except (KeyError, ValueError, AssertionError, TypeError, yaml.YAMLError, OSError) as e:
        raise ConfigError(f"{config_file}: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    from rdet.config.schema import check_detection_cfg

    check_detection_cfg(cfg)  # rdet's own keys' rules, as for every config rdet builds
    return cfg


def check_weights(cfg, eval_only: bool = False, allow_pickle: bool = False) -> Optional[WeightsInfo]:
    """What ``MODEL.WEIGHTS`` holds (``None`` for none: training from scratch); refuses a file
    detectron2 would load nothing from, an unsafe ``.pkl``, and a backbone-only file for
    ``--eval-only`` (its detection heads would be random)."""
    w = cfg.MODEL.WEIGHTS
    if not w:
        if eval_only:
            raise CheckpointError("--eval-only needs MODEL.WEIGHTS: a trained detector such as a train_det "
                                  "run's OUTPUT_DIR/model_final.pth")
        return None
    path = w
    if "://" in w:
        from detectron2.utils.file_io import PathManager

        try:
            path = PathManager.get_local_path(w)
        except Exception as e:  # noqa: BLE001 - network and handler errors of every kind
            raise CheckpointError(f"MODEL.WEIGHTS {w}: cannot fetch ({(str(e).splitlines() or [''])[0]})") from None
    info = inspect_weights(path, allow_pickle=allow_pickle)
    if eval_only and info.kind != "detector":
        raise CheckpointError(f"MODEL.WEIGHTS {w}: holds a backbone only, so --eval-only would evaluate random "
                              "detection heads; give a trained detector (a train_det run's model_final.pth)")
    return info


def check_c4(cfg, arch: Optional[str]) -> None:
    """A C4 detector (``Res5ROIHeads``: its box head is the backbone's res5 stage, which
    detectron2 always builds from Bottleneck blocks) needs a Bottleneck ResNet (depth >= 50 in
    the registry's Detectron2 geometry: ResNet-50/101, WRN-50-2/4, ResNeXt-50); FPN detectors
    take any convertible backbone. ``arch``: the converted backbone's (``None``: not known)."""
    from rdet.backbones import get_spec

    if arch is None or cfg.MODEL.ROI_HEADS.NAME != "Res5ROIHeads":
        return
    d2 = get_spec(arch).d2
    if d2 is None or d2.depth < 50:
        raise ConfigError(f"MODEL.ROI_HEADS.NAME Res5ROIHeads is a C4 detector, which needs a Bottleneck ResNet "
                          f"(depth >= 50), not {arch}")


def _check_resume_checkpoint(output_dir: str, allow_pickle: bool) -> None:
    """With ``--resume`` detectron2 loads the checkpoint ``OUTPUT_DIR/last_checkpoint`` names
    instead of ``MODEL.WEIGHTS``: the same checks apply to it."""
    tag = Path(output_dir) / "last_checkpoint"
    if tag.is_file():
        inspect_weights(Path(output_dir) / tag.read_text().strip(), allow_pickle, what="--resume checkpoint")


def setup(config_file: str, opts: Sequence[str] = (), eval_only: bool = False, allow_pickle: bool = False,
          resume: bool = False, backbone_config: Optional[str] = None) -> Tuple[Any, Optional[WeightsInfo]]:
    """The run's frozen config and what its weights hold, every input checked."""
    cfg = build_cfg(config_file, opts, backbone_config)
    check_output_dir(cfg.OUTPUT_DIR)
    info = check_weights(cfg, eval_only, allow_pickle)
    from rdet.detection import semantic
    from rdet.detection.timm_backbones import check_timm_config
    from rdet.detection.trainer import check_optimizer_config

    arch = info.backbone.get("arch") if info and info.kind == "backbone" else None
    check_timm_config(semantic.as_built(cfg), info.meta if info and info.kind == "backbone" else None)
    if semantic.is_semantic(cfg):
        semantic.check_semantic_config(cfg, arch)
    else:
        check_c4(cfg, arch)
    check_optimizer_config(cfg)
    if resume:
        _check_resume_checkpoint(cfg.OUTPUT_DIR, allow_pickle)
    names = list(cfg.DATASETS.TEST) + ([] if eval_only else list(cfg.DATASETS.TRAIN))
    if semantic.is_semantic(cfg):
        from rdet.detection.sem_datasets import check_sem_seg_datasets

        check_sem_seg_datasets(names, cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES)
    check_datasets(names)
    if cfg.MODEL.DEVICE.startswith("cuda") and not torch.cuda.is_available():
        logger.warning("CUDA is not available: running on CPU (MODEL.DEVICE cpu)")
        cfg.MODEL.DEVICE = "cpu"
    if cfg.MODEL.DEVICE == "cpu":
        semantic.cpu_norms(cfg)
    for k in BACKBONE_KEYS:
        cfg.RDET.BACKBONE[k.upper()] = info.backbone.get(k) if info else None
    cfg.freeze()
    return cfg, info


def _ap(results: Dict, task: str, key: str) -> Optional[float]:
    v = results.get(task, {}).get(key)
    return None if v is None or v != v else float(v)  # NaN (no detections of a class) -> None


def make_record(cfg, results: Dict, wall_time: float, eval_only: bool = False,
                info: Optional[WeightsInfo] = None) -> Dict[str, Any]:
    """The run's ``result.json``. An evaluation names the iterations and schedule its checkpoint
    was trained for (``None`` when unknown); training names what ``SOLVER`` ran."""
    task = "instance_segmentation" if cfg.MODEL.MASK_ON else "detection"
    b = cfg.RDET.BACKBONE
    if eval_only:
        iters, schedule = (info.iterations, info.schedule) if info else (None, None)
    else:
        iters = cfg.SOLVER.MAX_ITER
        schedule = schedule_name(cfg.RDET.SCHEDULE, iters, cfg.SOLVER.IMS_PER_BATCH)
    from rdet.detection import semantic

    if semantic.is_semantic(cfg):  # the same provenance, segmentation's metrics
        return dict({"dataset": ",".join(cfg.DATASETS.TEST), "train_datasets": list(cfg.DATASETS.TRAIN),
                     "data_note": data_note(list(cfg.DATASETS.TEST)),
                     "backbone": dict({k: b[k.upper()] for k in BACKBONE_KEYS}, source=b.SOURCE or cfg.MODEL.WEIGHTS),
                     "weights": cfg.MODEL.WEIGHTS, "eval_only": eval_only},
                    **semantic.semantic_record_fields(cfg), **semantic.semantic_metrics(cfg, results),
                    iterations=iters, schedule=schedule, seed=cfg.SEED, wall_time_s=wall_time)
    return {"task": "detection", "detection_task": task, "dataset": ",".join(cfg.DATASETS.TEST),
            "train_datasets": list(cfg.DATASETS.TRAIN), "data_note": data_note(list(cfg.DATASETS.TEST)),
            "backbone": dict({k: b[k.upper()] for k in BACKBONE_KEYS}, source=b.SOURCE or cfg.MODEL.WEIGHTS),
            "weights": cfg.MODEL.WEIGHTS, "eval_only": eval_only,
            "meta_architecture": f"{cfg.MODEL.META_ARCHITECTURE}/{cfg.MODEL.ROI_HEADS.NAME}",
            "box_AP": _ap(results, "bbox", "AP"), "box_AP50": _ap(results, "bbox", "AP50"),
            "box_AP75": _ap(results, "bbox", "AP75"),
            "mask_AP": _ap(results, "segm", "AP") if cfg.MODEL.MASK_ON else None,
            "iterations": iters, "schedule": schedule, "seed": cfg.SEED, "wall_time_s": wall_time}


def train_worker(cfg, args: argparse.Namespace, info: Optional[WeightsInfo] = None) -> Optional[Dict[str, Any]]:
    """Runs in every process ``launch`` starts; returns the record on the main process. A
    launched worker frees its process groups once the work is done (:mod:`rdet.detection.groups`)."""
    record = _train_and_test(cfg, args, info)  # its trainer and model are dropped on return
    release_process_groups()
    return record


def _train_and_test(cfg, args: argparse.Namespace, info: Optional[WeightsInfo]) -> Optional[Dict[str, Any]]:
    from detectron2.checkpoint import DetectionCheckpointer
    from detectron2.utils import comm

    from rdet.detection.logs import run_logging
    from rdet.detection.semantic import trainer_class
    from rdet.detection.trainer import ddp_on_cpu

    Trainer = trainer_class(cfg)  # noqa: N806 - detection's, or the semantic one

    start = time.time()
    if any(n.startswith("rdet_fashion_det") for n in list(cfg.DATASETS.TRAIN) + list(cfg.DATASETS.TEST)):
        register_demo_dataset()  # a spawned worker starts with detectron2's builtin catalog only
    from rdet.detection.sem_datasets import SETS, register_sem_seg_dataset

    for name in {n for n in list(cfg.DATASETS.TRAIN) + list(cfg.DATASETS.TEST) if n in SETS}:
        register_sem_seg_dataset(name)  # prepared and checked by setup already: reads the stamps
    with run_logging(cfg, args, console=args.console):
        if args.eval_only:
            model = Trainer.build_model(cfg)
            DetectionCheckpointer(model, save_dir=cfg.OUTPUT_DIR).resume_or_load(cfg.MODEL.WEIGHTS, resume=args.resume)
            results = Trainer.test(cfg, model)
        else:
            with ddp_on_cpu():
                trainer = Trainer(cfg)
            trainer.resume_or_load(resume=args.resume)
            trainer.train()
            results = Trainer.test(cfg, trainer.model)
    if not comm.is_main_process():
        return None
    record = make_record(cfg, results, time.time() - start, args.eval_only, info)
    write_record(Path(cfg.OUTPUT_DIR), record)
    return record


def _check_launch(num_gpus: int, num_machines: int, machine_rank: int, dist_url: str) -> None:
    if num_gpus < 1 or num_machines < 1:
        raise ConfigError(f"--num-gpus {num_gpus} --num-machines {num_machines}: both must be at least 1")
    if not 0 <= machine_rank < num_machines:
        raise ConfigError(f"--machine-rank {machine_rank}: must be in [0, {num_machines - 1}]")
    if num_machines > 1 and dist_url == "auto":
        raise ConfigError("--dist-url auto works on one machine only: give every machine "
                          "tcp://<machine rank 0's address>:<free port>")


def run(config_file: str, opts: Sequence[str] = (), resume: bool = False, eval_only: bool = False,
        num_gpus: int = 1, num_machines: int = 1, machine_rank: int = 0, dist_url: str = "auto",
        allow_pickle: bool = False, console: bool = True,
        backbone_config: Optional[str] = None) -> Optional[Dict[str, Any]]:
    """Check, then train (or evaluate) in ``num_gpus`` x ``num_machines`` processes; returns the
    record (also in ``OUTPUT_DIR/result.json``), or ``None`` on a machine other than rank 0.

    ``allow_pickle``: let a ``.pkl`` ``MODEL.WEIGHTS`` name any Python callable (trusted files
    only). ``console=False``: detectron2's whole log goes only to ``OUTPUT_DIR/log.txt``.
    ``backbone_config``: a converter's config, merged last (:func:`build_cfg`)."""
    from detectron2.engine import launch

    _check_launch(num_gpus, num_machines, machine_rank, dist_url)
    cfg, info = setup(config_file, opts, eval_only, allow_pickle, resume, backbone_config)
    settle()  # detectron2 is imported: the work starts (rdet.core.collector)
    # What detectron2's default_setup logs as the command line.
    args = argparse.Namespace(config_file=config_file, opts=list(opts), resume=resume, eval_only=eval_only,
                              num_gpus=num_gpus, num_machines=num_machines, machine_rank=machine_rank,
                              dist_url=dist_url, allow_pickle=allow_pickle, console=console)
    if num_gpus * num_machines == 1:
        return train_worker(cfg, args, info)
    launch(train_worker, num_gpus, num_machines=num_machines, machine_rank=machine_rank, dist_url=dist_url,
           args=(cfg, args, info))
    return read_record(Path(cfg.OUTPUT_DIR) / "result.json") if machine_rank == 0 else None
