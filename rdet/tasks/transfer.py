"""Transfer a pretrained backbone to a classification dataset: fixed-feature or full-network.

    python -m rdet classify                      # offline demo (Fashion-MNIST 5-9, see below)
    python -m rdet classify --dataset cifar10 --data-root /data --arch resnet50 \
        --weights resnet50_l2_eps3 --mode fixed --output-dir output/c10_fixed
    python -m rdet classify --config-file configs/classify_paper.yaml --grid ...   # lr x seed grid
    torchrun --nproc_per_node 4 -m rdet classify --mode full ...

Paper protocol (appendix A.2, ``rdet.config.get_transfer_cfg``): SGD, batch 64, momentum 0.9,
wd 5e-4, 150 epochs, lr in {0.01, 0.001} /10 every 50 epochs, a fresh RandomResizedCrop + flip
view of every training image each epoch. ``TRANSFER.CACHE_FEATURES True`` trains the fixed-feature
head on TRANSFER.CACHE_VIEWS cached views instead (much faster; a different protocol, recorded as
such). The test set is evaluated every TRANSFER.EVAL_EVERY epochs; the record reports the final
epoch and keeps the best periodic value beside it. Each run writes ``result.json`` (and, on the
per-epoch path, ``last_checkpoint.pth`` for ``--resume``) to its output directory.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Dict, List

import torch

from rdet.backbones.checkpoint import classifier_checkpoint
from rdet.data.classification import get_dataset_entry
from rdet.engine import apply_bn_mode, build_loader, evaluate, prepare_bn, setup_runtime
from rdet.data.build import datasets_from_cfg
from rdet.engine.hooks import PeriodicEval, final_and_best
from rdet.engine.optim import describe as describe_recipe, recipe_note
from rdet.engine.rundir import RunDir
from rdet.engine.steps import StandardStep
from rdet.core.records import write_record
from rdet.tasks.checks import check_training_inputs
from rdet.transfer import (build_transfer_model, evaluate_features, extract_features, extract_views, set_train_mode,
                           train_head_on_features, trainable_parameters)

from rdet.data.transforms import preprocessing_from_cfg

logger = logging.getLogger(__name__)


def protocol_of(cfg, cached: bool) -> str:
    """How the head/network was trained, for records and report rows."""
    if cached:
        return f"feature-cache ({cfg.TRANSFER.CACHE_VIEWS} view{'s' if cfg.TRANSFER.CACHE_VIEWS > 1 else ''})"
    return "per-epoch"


def run(cfg, resume: bool = False) -> Dict[str, Any]:
    """One transfer cell (SOLVER.BASE_LR, SEED); returns and writes its result record."""
    check_training_inputs(cfg)
    rt = setup_runtime(cfg)
    torch.manual_seed(cfg.SEED)
    train_ds, test_ds, num_classes, note = datasets_from_cfg(cfg)
    model, bmeta = build_transfer_model(cfg, num_classes)
    mode = cfg.TRANSFER.MODE
    recipe_warning = recipe_note(cfg, model.spec)
    if recipe_warning:
        logger.warning(recipe_warning)
    model = rt.prepare(prepare_bn(model, cfg.MODEL.BN, rt))
    cached = mode == "fixed" and cfg.TRANSFER.CACHE_FEATURES and not rt.distributed
    entry = get_dataset_entry(cfg.DATA.DATASET)
    with RunDir(cfg, rt, resume and not cached) as rundir:
        logger.info("transfer %s (%s) -> %s: %s-%s, %s, lr %g, seed %d; data: %s", cfg.MODEL.ARCH, bmeta["source"],
                    cfg.DATA.DATASET, mode, "feature" if mode == "fixed" else "network", protocol_of(cfg, cached),
                    cfg.SOLVER.BASE_LR, cfg.SEED, note)
        run_fn = _run_cached if cached else _run_epochs
        history = run_fn(model, train_ds, test_ds, num_classes, cfg, rt, rundir)
        scores = final_and_best(history, entry.metric)
        final = scores["final"]
        record = {"task": "classification", "dataset": cfg.DATA.DATASET, "data_note": note, "mode": mode,
                  "metric": entry.metric, "value": final[entry.metric], "top1": final["top1"],
                  "mean_per_class": final["mean_per_class"], "reported": "final epoch",
                  "best_value": scores["best_value"], "best_epoch": scores["best_epoch"],
                  "evaluations": [[e, s[entry.metric]] for e, s in history["evals"]],
                  "backbone": bmeta, "lr": cfg.SOLVER.BASE_LR, "seed": cfg.SEED, "epochs": cfg.SOLVER.EPOCHS,
                  "downscale": cfg.DATA.DOWNSCALE, "classes": list(cfg.DATA.CLASSES),
                  "protocol": protocol_of(cfg, cached), "amp": cfg.RUNTIME.AMP, "world_size": rt.world_size,
                  # what else tells experiments apart in the report (rdet.report.experiment)
                  "eval_split": "validation" if cfg.DATA.VAL_SIZE else "test", "train_size": cfg.DATA.TRAIN_SIZE,
                  "bn": cfg.MODEL.BN,
                  "preprocessing": preprocessing_from_cfg(cfg).record(),  # test images' resize, crop, interpolation
                  "recipe": describe_recipe(cfg),  # which optimizer recipe ran, with its settings
                  "wall_time_s": rundir.elapsed()}
        if rt.is_main:
            write_record(rundir.path, record)
    return record


def _run_cached(model, train_ds, test_ds, num_classes, cfg, rt, rundir) -> Dict[str, Any]:
    """Fixed-feature on cached features: extract CACHE_VIEWS augmented views once, train the head."""
    train_loader = build_loader(train_ds, cfg, rt, train=False)  # in order: features align with labels
    test_loader = build_loader(test_ds, cfg, rt, train=False)
    views, labels = extract_views(model, train_loader, rt, cfg.TRANSFER.CACHE_VIEWS, cfg.SEED)
    test_feats, test_labels = extract_features(model, test_loader, rt, desc="features (test)")
    head = model.head.float()
    evaluator = PeriodicEval(lambda: evaluate_features(head, test_feats, test_labels, num_classes),
                             cfg.TRANSFER.EVAL_EVERY)
    train_head_on_features(head, views, labels, cfg, cfg.SOLVER.BASE_LR, cfg.SEED, rt=rt, hooks=[evaluator])
    return evaluator.trainer.history


def _run_epochs(model, train_ds, test_ds, num_classes, cfg, rt, rundir) -> Dict[str, Any]:
    mode = cfg.TRANSFER.MODE
    ddp = rt.wrap_ddp(model)
    train_loader = build_loader(train_ds, cfg, rt, train=True, seed=cfg.SEED, keep_last=mode == "fixed")
    test_loader = build_loader(test_ds, cfg, rt, train=False)
    meta = {"arch": cfg.MODEL.ARCH, "dataset": cfg.DATA.DATASET, "transfer_mode": mode, "source": cfg.MODEL.WEIGHTS}

    def train_mode(m):
        set_train_mode(m, mode)
        apply_bn_mode(m, cfg.MODEL.BN)

    evaluator = PeriodicEval(lambda: evaluate(model, test_loader, rt, num_classes), cfg.TRANSFER.EVAL_EVERY)
    trainer = rundir.build_trainer(model, trainable_parameters(model, mode), train_loader, StandardStep(),
                                   cfg.SOLVER.EPOCHS, ddp=ddp, train_mode=train_mode,
                                   weights=lambda: classifier_checkpoint(model, dict(meta, epoch=trainer.epoch)),
                                   measure_hooks=[evaluator], desc="transfer", cfg=cfg)
    trainer.train()
    return trainer.history


def grid_cells(cfg) -> List:
    """One config per (lr, seed) of TRANSFER.LR_GRID x TRANSFER.SEEDS, each in its own subdir."""
    cells = []
    for lr in cfg.TRANSFER.LR_GRID:
        for seed in cfg.TRANSFER.SEEDS:
            c = cfg.clone()
            c.SOLVER.BASE_LR, c.SEED = float(lr), int(seed)
            c.OUTPUT_DIR = str(Path(cfg.OUTPUT_DIR) / f"lr{lr:g}_seed{seed}")
            cells.append(c)
    return cells
