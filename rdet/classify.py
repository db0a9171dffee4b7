"""Transfer a pretrained backbone to a classification dataset: fixed-feature or full-network.

    python -m rdet.classify                      # offline demo (Fashion-MNIST 5-9, see below)
    python -m rdet.classify --dataset cifar10 --data-root /data --arch resnet50 \
        --weights resnet50_l2_eps3 --mode fixed --output-dir output/c10_fixed
    python -m rdet.classify --config-file configs/classify_paper.yaml --grid ...   # lr x seed grid
    torchrun --nproc_per_node 4 -m rdet.classify --mode full ...

Paper protocol (appendix A.2, ``rdet.config.get_transfer_cfg``): SGD, batch 64, momentum 0.9,
wd 5e-4, 150 epochs, lr in {0.01, 0.001} /10 every 50 epochs, a fresh RandomResizedCrop + flip
view of every training image each epoch. ``TRANSFER.CACHE_FEATURES True`` trains the fixed-feature
head on TRANSFER.CACHE_VIEWS cached views instead (much faster; a different protocol, recorded as
such). The test set is evaluated every TRANSFER.EVAL_EVERY epochs; the record reports the final
epoch and keeps the best periodic value beside it. Each run writes ``result.json`` (and, on the
per-epoch path, ``last_checkpoint.pth`` for ``--resume``) to its output directory.
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import torch

from rdet.backbones.checkpoint import classifier_checkpoint
from rdet.cli import is_main_process, parse_with_overrides, run_cli
from rdet.config import CONFIG_DIR, build_config, get_transfer_cfg
from rdet.data.classification import get_dataset_entry
from rdet.engine import apply_bn_mode, build_loader, evaluate, prepare_bn, setup_runtime
from rdet.data.build import datasets_from_cfg
from rdet.engine.hooks import PeriodicEval, final_and_best
from rdet.engine.rundir import RunDir
from rdet.engine.steps import StandardStep
from rdet.core.records import write_record
from rdet.validate import check_training_inputs
from rdet.transfer import (build_transfer_model, evaluate_features, extract_features, extract_views, set_train_mode,
                           train_head_on_features, trainable_parameters)

logger = logging.getLogger(__name__)

DEMO_CONFIG = CONFIG_DIR / "classify_demo.yaml"


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


def build_cfg(argv: Optional[Sequence[str]] = None):
    p = argparse.ArgumentParser(prog="python -m rdet.classify", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config-file", help=f"YAML config (default with no data arguments: {DEMO_CONFIG.name})")
    p.add_argument("--dataset", help="aircraft, birdsnap, caltech101, caltech256, cars, cifar10, cifar100, dtd, "
                                     "flowers, food, pets, sun397, imagefolder, fashion_mnist, digits")
    p.add_argument("--data-root", help="folder holding the dataset (default $RDET_DATASETS or ./datasets)")
    p.add_argument("--arch")
    p.add_argument("--weights", help="catalog name (python -m rdet.backbones catalog) or checkpoint file")
    p.add_argument("--mode", choices=("fixed", "full"))
    p.add_argument("--downscale", type=int, help="resize to this size first (32: the paper's unified scale)")
    p.add_argument("--output-dir")
    p.add_argument("--grid", action="store_true", help="run every TRANSFER.LR_GRID x TRANSFER.SEEDS cell")
    p.add_argument("--resume", action="store_true", help="continue from OUTPUT_DIR/last_checkpoint.pth")
    p.add_argument("--allow-pickle", action="store_true", help="full unpickling of --weights (trusted files only)")
    args = parse_with_overrides(p, argv)
    demo = args.config_file is None and args.dataset is None and args.data_root is None
    cfg = build_config(get_transfer_cfg(), str(DEMO_CONFIG) if demo else args.config_file,
                       {"DATA.DATASET": args.dataset, "DATA.ROOT": args.data_root, "MODEL.ARCH": args.arch,
                        "MODEL.WEIGHTS": args.weights, "TRANSFER.MODE": args.mode, "DATA.DOWNSCALE": args.downscale,
                        "OUTPUT_DIR": args.output_dir, "MODEL.ALLOW_PICKLE": True if args.allow_pickle else None},
                       args.opts)
    return cfg, args, demo


def _demo_weights(cfg) -> None:
    """The demo transfers from rdet's own pretraining demo (Fashion-MNIST classes 0-4)."""
    from rdet import pretrain

    weights = Path(cfg.MODEL.WEIGHTS)
    if weights.is_file():
        return
    logger.info("demo: no %s yet; pretraining it first (python -m rdet.pretrain, offline demo)", weights)
    pcfg, _ = pretrain.build_cfg(["OUTPUT_DIR", str(weights.parent)])
    pretrain.run(pcfg)


def _main(argv: Optional[Sequence[str]] = None) -> int:
    cfg, args, demo = build_cfg(argv)
    if demo:
        _demo_weights(cfg)
    cells = grid_cells(cfg) if args.grid else [cfg]
    for c in cells:
        rec = run(c, resume=args.resume)
        if is_main_process():
            print(f"{rec['dataset']} {rec['mode']} ({rec['protocol']}) lr={rec['lr']:g} seed={rec['seed']}: "
                  f"{rec['metric']} {rec['value']:.2f}% at the final epoch (best periodic {rec['best_value']:.2f}% at "
                  f"epoch {rec['best_epoch']})  ({rec['wall_time_s']:.0f} s; record: {Path(c.OUTPUT_DIR) / 'result.json'})")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Console-script entry point: user errors are one line and exit code 2."""
    return run_cli(_main, argv)


if __name__ == "__main__":
    raise SystemExit(main())
