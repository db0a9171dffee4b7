"""Clean and PGD accuracy of any checkpoint the backbone registry loads.

    python -m rdet evaluate --weights resnet50_l2_eps3 --data /data/imagenet --norm l2 --eps 0.25 0.5 1 3
    python -m rdet evaluate --weights output/pretrain_demo/model_final.pth --dataset fashion_mnist \\
        --config-file configs/pretrain_demo.yaml --norm linf --eps 0.01 0.03

``--config-file`` takes an evaluation config, or the training config of the model (pretraining or
transfer): from those only DATA.* and RUNTIME.* are used (which classes, image size, test subset).

The checkpoint's classifier head must belong to the dataset evaluated: the same number of classes
and, for rdet checkpoints, the same dataset and class subset. Otherwise the run is refused before
any work, unless ``--fit-head`` (EVAL.FIT_HEAD True) asks to first fit a linear head on the
dataset's training split with the body frozen (EVAL.FIT_HEAD_VIEWS cached augmented views,
SOLVER.* for the optimiser and schedule); the output and the record then say so.

The attack (``rdet.attacks.pgd``) starts at a random point of the ball, takes ATTACK.STEPS steps
of 2.5 * eps / STEPS and keeps, per image, the most successful of ATTACK.RESTARTS restarts. The
model is in eval mode. Writes ``robustness.json`` (atomically) to OUTPUT_DIR, with the backbone's
metadata (arch, training norm/eps/method; null where the checkpoint does not say).
"""
from __future__ import annotations

import contextlib
import logging
import time
from pathlib import Path
from typing import Any, Dict, Optional

from rdet.core.atomic import remove_stale_temps, save_json
from rdet.attacks import NORMS, make_perturb
from rdet.backbones import create_classifier
from rdet.backbones.checkpoint import LoadedCheckpoint, load_checkpoint, resolve
from rdet.backbones.registry import get_spec
from rdet.config import CfgNode, merge_config
from rdet.engine import build_loader, evaluate, setup_runtime
from rdet.data.build import datasets_from_cfg
from rdet.core.errors import ConfigError
from rdet.core.runlock import output_lock
from rdet.transfer import extract_views, train_head_on_features
from rdet.validate import check_config_file, check_known_ranges, check_output_dir, check_weights_arg

logger = logging.getLogger(__name__)

RESULT_NAME = "robustness.json"
CATALOG_CLASSES = 1000  # every released model is an ImageNet classifier
_FROM_TRAINING_CONFIG = ("DATA", "RUNTIME")


def merge_config_file(cfg: CfgNode, path: str) -> CfgNode:
    """Merge an evaluation config, or DATA.*/RUNTIME.* of a training config, into ``cfg``."""
    data = check_config_file(path)
    if not {"ADV", "TRANSFER"} & set(data):
        return merge_config(cfg, path)
    kept = CfgNode({k: data[k] for k in _FROM_TRAINING_CONFIG if k in data})
    logger.info("%s is a training config: using its %s settings", path, " and ".join(sorted(kept)) or "no")
    try:
        cfg.merge_from_other_cfg(kept)
    except (KeyError, ValueError, AssertionError, TypeError) as e:
        raise ConfigError(f"{path}: {str(e).splitlines()[0]}") from None
    return cfg


def check_inputs(cfg) -> str:
    """One-line errors for every bad setting, before anything is loaded or written; returns the
    kind of MODEL.WEIGHTS ("file" or "catalog")."""
    if cfg.ATTACK.NORM not in NORMS:
        raise ConfigError(f"ATTACK.NORM must be one of {', '.join(NORMS)}, not {cfg.ATTACK.NORM!r}")
    kind = check_weights_arg(cfg.MODEL.WEIGHTS)
    check_known_ranges(cfg)
    check_output_dir(cfg.OUTPUT_DIR)
    return kind


def head_mismatch(head_classes: Optional[int], meta: Dict[str, Any], cfg, num_classes: int) -> Optional[str]:
    """Why the checkpoint's head does not fit the evaluated data (``None`` when it does)."""
    data = f"{cfg.DATA.DATASET}{_classes_label(cfg.DATA.CLASSES)}"
    if head_classes is None:
        return "the checkpoint has no classifier head"
    if head_classes != num_classes:
        return f"the checkpoint's head has {head_classes} classes but {data} has {num_classes}"
    trained_on = meta.get("dataset")
    if trained_on and (trained_on, _subset(meta.get("classes"), num_classes)) != \
            (cfg.DATA.DATASET, _subset(cfg.DATA.CLASSES, num_classes)):
        return f"the checkpoint's head was trained on {trained_on}{_classes_label(meta.get('classes'))}, not {data}"
    return None


def _subset(classes, num_classes: int) -> list:
    """DATA.CLASSES with "every class in order" written as []."""
    classes = list(classes or [])
    return [] if classes == list(range(num_classes)) else classes


def _classes_label(classes) -> str:
    return f" classes {list(classes)}" if classes else ""


def _refuse_or_fit(why: Optional[str], cfg, rt) -> Optional[str]:
    if why is None:
        return None
    if not cfg.EVAL.FIT_HEAD:
        raise ConfigError(f"{why}: its predictions would come from a random head; pass --fit-head "
                          f"(EVAL.FIT_HEAD True) to fit a linear head on the training split first")
    if rt.distributed:
        raise ConfigError("EVAL.FIT_HEAD runs in one process: start rdet.evaluate without torchrun")
    return why


def backbone_meta(loaded: LoadedCheckpoint, weights: str) -> Dict[str, Any]:
    """What the checkpoint says about its training; ``None`` where it says nothing (unknown, not 0)."""
    m = loaded.meta
    eps = m.get("eps")
    method = m.get("method")
    if method is None and eps is not None:  # the paper's released models: PGD, or standard at eps 0
        method = "standard" if eps == 0 else ("pgd" if m.get("format") == "robustness" else None)
    return {"arch": loaded.arch, "norm": None if eps == 0 else m.get("norm"), "eps": eps, "method": method,
            "trained_on": m.get("dataset"), "classes": m.get("classes"), "format": m.get("format"),
            "source": str(weights)}


def _head_classes(loaded: LoadedCheckpoint) -> Optional[int]:
    w = loaded.state_dict.get(get_spec(loaded.arch).classifier + ".weight")
    return int(w.shape[0]) if w is not None else None


def fit_head(model, train_ds, cfg, rt, num_classes: int) -> Dict[str, Any]:
    """Train a fresh linear head on frozen features of EVAL.FIT_HEAD_VIEWS augmented views of the
    training split (``rdet.transfer.feature_cache``); returns what the record says about it."""
    model.reset_head(num_classes)
    loader = build_loader(train_ds, cfg, rt, train=False)  # in order: features align with labels
    views, labels = extract_views(model, loader, rt, cfg.EVAL.FIT_HEAD_VIEWS, cfg.SEED)
    stats = train_head_on_features(model.head.float(), views, labels, cfg, cfg.SOLVER.BASE_LR, cfg.SEED, rt=rt)
    return {"views": cfg.EVAL.FIT_HEAD_VIEWS, "epochs": cfg.SOLVER.EPOCHS, "lr": cfg.SOLVER.BASE_LR,
            "batch_size": cfg.SOLVER.BATCH_SIZE, "train_images": len(labels),
            "train_top1_last_epoch": stats.get("acc")}


def run(cfg) -> Dict[str, Any]:
    """Check everything, then evaluate clean and under PGD for each ATTACK.EPS; writes and
    returns the ``robustness.json`` record."""
    kind = check_inputs(cfg)
    start = time.time()
    rt = setup_runtime(cfg)
    train_ds, test, num_classes, note = datasets_from_cfg(cfg)
    if kind == "catalog":  # known before the download
        _refuse_or_fit(head_mismatch(CATALOG_CLASSES, {}, cfg, num_classes), cfg, rt)
    loaded = load_checkpoint(resolve(cfg.MODEL.WEIGHTS), allow_pickle=cfg.MODEL.ALLOW_PICKLE)
    cfg.MODEL.ARCH = loaded.arch
    why = _refuse_or_fit(head_mismatch(_head_classes(loaded), loaded.meta, cfg, num_classes), cfg, rt)
    model = create_classifier(loaded.arch, num_classes)
    model.load_torchvision_state_dict(loaded.state_dict, with_head=why is None)
    model = rt.prepare(model)
    loaded.state_dict = {}  # the model holds its own copy
    out = Path(cfg.OUTPUT_DIR)
    with contextlib.ExitStack() as held:
        if rt.is_main:  # every input is valid: now the folder may be created and held
            out.mkdir(parents=True, exist_ok=True)
            held.enter_context(output_lock(out))
            remove_stale_temps(out)
        head = {"source": "checkpoint"}
        if why is not None:
            logger.info("%s: fitting a linear head on %s's training split (frozen body)", why, cfg.DATA.DATASET)
            head = {"source": "fitted on the training split (frozen body)", "reason": why,
                    **fit_head(model, train_ds, cfg, rt, num_classes)}
        rows = _evaluate_all(model, test, cfg, rt, num_classes)
        result = {"task": "robustness", "weights": cfg.MODEL.WEIGHTS, "arch": model.spec.name,
                  "backbone": backbone_meta(loaded, cfg.MODEL.WEIGHTS), "head": head,
                  "attack": {"norm": cfg.ATTACK.NORM, "steps": cfg.ATTACK.STEPS, "restarts": cfg.ATTACK.RESTARTS,
                             "step_size_factor": cfg.ATTACK.STEP_SIZE_FACTOR or 2.5 / cfg.ATTACK.STEPS,
                             "random_start": True},
                  "dataset": cfg.DATA.DATASET, "classes": list(cfg.DATA.CLASSES), "data_note": note,
                  "results": rows, "amp": cfg.RUNTIME.AMP, "world_size": rt.world_size,
                  "wall_time_s": time.time() - start}
        if rt.is_main:
            save_json(result, out / RESULT_NAME)
    return result


def _evaluate_all(model, test, cfg, rt, num_classes: int):
    loader = build_loader(test, cfg, rt, train=False)
    rows = [{"eps": 0.0, **evaluate(model, loader, rt, num_classes, desc="clean")}]
    for eps in cfg.ATTACK.EPS:
        step = cfg.ATTACK.STEP_SIZE_FACTOR * eps if cfg.ATTACK.STEP_SIZE_FACTOR > 0 else None
        attack = make_perturb(float(eps), cfg.ATTACK.NORM, cfg.ATTACK.STEPS, step, rand_init=True,
                              restarts=cfg.ATTACK.RESTARTS, autocast=rt.autocast)
        rows.append({"eps": float(eps), **evaluate(model, loader, rt, num_classes, perturb=attack,
                                                     desc=f"PGD eps={eps:g}")})
    return rows
