"""Transfer a pretrained backbone to a classification dataset: fixed-feature or full-network.

    python -m rdet.classify                      # offline demo (Fashion-MNIST 5-9, see below)
    python -m rdet.classify --dataset cifar10 --data-root /data --arch resnet50 \
        --weights resnet50_l2_eps3 --mode fixed --output-dir output/c10_fixed
    python -m rdet.classify --config-file configs/classify_paper.yaml --grid ...   # lr x seed grid
    torchrun --nproc_per_node 4 -m rdet.classify --mode full ...

Paper protocol (appendix A.2, ``rdet.config.get_transfer_cfg``): SGD, batch 64, momentum 0.9,
wd 5e-4, 150 epochs, lr in {0.01, 0.001} /10 every 50 epochs. Fixed-feature runs by default on
cached backbone features (TRANSFER.CACHE_FEATURES), which trains the same head far faster.
Each run writes ``result.json`` (and, on the per-epoch path, ``last_checkpoint.pth`` for
``--resume``) to its output directory.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import torch

from rdet.cli import run_cli
from rdet.config import CONFIG_DIR, get_transfer_cfg, merge_config
from rdet.data.classification import get_dataset_entry
from rdet.engine import (LAST, apply_bn_mode, build_loader, build_optimizer, build_scheduler, evaluate, load_state,
                         prepare_bn, resume_point, save_state, setup_runtime, train_one_epoch)
from rdet.engine.datasets import datasets_from_cfg
from rdet.records import write_record
from rdet.transfer import (build_transfer_model, evaluate_features, extract_features, set_train_mode,
                           train_head_on_features, trainable_parameters)

DEMO_CONFIG = CONFIG_DIR / "classify_demo.yaml"


def run(cfg, resume: bool = False) -> Dict[str, Any]:
    """One transfer cell (SOLVER.BASE_LR, SEED); returns and writes its result record."""
    start = time.time()
    rt = setup_runtime(cfg)
    torch.manual_seed(cfg.SEED)
    out = Path(cfg.OUTPUT_DIR)
    train_ds, test_ds, num_classes, note = datasets_from_cfg(cfg)
    model, bmeta = build_transfer_model(cfg, num_classes)
    out.mkdir(parents=True, exist_ok=True)  # only once the inputs are known to be good
    mode = cfg.TRANSFER.MODE
    model = rt.prepare(prepare_bn(model, cfg.MODEL.BN, rt))
    cached = mode == "fixed" and cfg.TRANSFER.CACHE_FEATURES and not rt.distributed
    if rt.is_main:
        print(f"transfer {cfg.MODEL.ARCH} ({bmeta['source']}) -> {cfg.DATA.DATASET}: {mode}-{'feature' if mode == 'fixed' else 'network'}"
              f"{' on cached features' if cached else ''}, lr {cfg.SOLVER.BASE_LR:g}, seed {cfg.SEED}; data: {note}")
    scores = _run_cached(model, train_ds, test_ds, num_classes, cfg, rt) if cached else \
        _run_epochs(model, train_ds, test_ds, num_classes, cfg, rt, out, resume)
    entry = get_dataset_entry(cfg.DATA.DATASET)
    record = {"task": "classification", "dataset": cfg.DATA.DATASET, "data_note": note, "mode": mode,
              "metric": entry.metric, "value": scores[entry.metric], "top1": scores["top1"],
              "mean_per_class": scores["mean_per_class"], "backbone": bmeta, "lr": cfg.SOLVER.BASE_LR,
              "seed": cfg.SEED, "epochs": cfg.SOLVER.EPOCHS, "downscale": cfg.DATA.DOWNSCALE,
              "classes": list(cfg.DATA.CLASSES), "path": "cached-features" if cached else "per-epoch",
              "wall_time_s": time.time() - start}
    if rt.is_main:
        write_record(out, record)
    return record


def _run_cached(model, train_ds, test_ds, num_classes, cfg, rt):
    train_loader = build_loader(train_ds, cfg, rt, train=False)  # in order: features align with labels
    test_loader = build_loader(test_ds, cfg, rt, train=False)
    views = []
    for v in range(max(1, cfg.TRANSFER.CACHE_VIEWS)):
        torch.manual_seed(cfg.SEED * 1000 + v)  # each view: a different draw of the augmentation
        feats, labels = extract_features(model, train_loader, rt, desc=f"features (view {v + 1})")
        views.append(feats)
    test_feats, test_labels = extract_features(model, test_loader, rt, desc="features (test)")
    head = model.head.float().cpu()
    train_head_on_features(head, views, labels, cfg, cfg.SOLVER.BASE_LR, cfg.SEED)
    return evaluate_features(head, test_feats, test_labels, num_classes)


def _run_epochs(model, train_ds, test_ds, num_classes, cfg, rt, out: Path, resume: bool):
    mode = cfg.TRANSFER.MODE
    ddp = rt.wrap_ddp(model)
    optimizer = build_optimizer(trainable_parameters(model, mode), cfg)
    scheduler = build_scheduler(optimizer, cfg)
    first = 0
    last = resume_point(out, resume)
    if last is not None:
        first = load_state(last, model, optimizer, scheduler)
        if rt.is_main:
            print(f"resuming from {last} at epoch {first + 1}")
    train_loader = build_loader(train_ds, cfg, rt, train=True, seed=cfg.SEED)
    test_loader = build_loader(test_ds, cfg, rt, train=False)
    writer = None
    if rt.is_main:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(out / "tb"))
    meta = {"arch": cfg.MODEL.ARCH, "dataset": cfg.DATA.DATASET, "transfer_mode": mode, "source": cfg.MODEL.WEIGHTS}
    scaler = rt.grad_scaler()
    for epoch in range(first, cfg.SOLVER.EPOCHS):
        train_loader.sampler.set_epoch(epoch)
        set_train_mode(ddp, mode)
        apply_bn_mode(ddp, cfg.MODEL.BN)
        stats = train_one_epoch(ddp, train_loader, optimizer, rt, epoch, writer=writer, scaler=scaler,
                                log_every=cfg.RUNTIME.LOG_EVERY, desc="transfer")
        scheduler.step()
        if rt.is_main:
            save_state(out / LAST, model, optimizer, scheduler, epoch, meta)
            print(f"epoch {epoch + 1}/{cfg.SOLVER.EPOCHS}: loss {stats['loss']:.3f} train acc {stats['acc']:.1f}%")
    scores = evaluate(model, test_loader, rt, num_classes)
    if writer is not None:
        writer.add_scalar("test/top1", scores["top1"], cfg.SOLVER.EPOCHS)
        writer.close()
    return scores


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
    p.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE overrides, e.g. SOLVER.EPOCHS 10")
    args = p.parse_args(argv)
    cfg = get_transfer_cfg()
    demo = args.config_file is None and args.dataset is None and args.data_root is None
    merge_config(cfg, str(DEMO_CONFIG) if demo else args.config_file, args.opts)
    for key, val in (("DATA.DATASET", args.dataset), ("DATA.ROOT", args.data_root), ("MODEL.ARCH", args.arch),
                     ("MODEL.WEIGHTS", args.weights), ("TRANSFER.MODE", args.mode),
                     ("DATA.DOWNSCALE", args.downscale), ("OUTPUT_DIR", args.output_dir)):
        if val is not None:
            merge_config(cfg, None, [key, str(val)])
    if args.allow_pickle:
        cfg.MODEL.ALLOW_PICKLE = True
    return cfg, args, demo


def _demo_weights(cfg) -> None:
    """The demo transfers from rdet's own pretraining demo (Fashion-MNIST classes 0-4)."""
    from rdet import pretrain

    weights = Path(cfg.MODEL.WEIGHTS)
    if weights.is_file():
        return
    print(f"demo: no {weights} yet; pretraining it first (python -m rdet.pretrain, offline demo)")
    pcfg, _ = pretrain.build_cfg(["OUTPUT_DIR", str(weights.parent)])
    pretrain.run(pcfg)


def main(argv: Optional[Sequence[str]] = None) -> int:
    cfg, args, demo = build_cfg(argv)
    if demo:
        _demo_weights(cfg)
    cells = grid_cells(cfg) if args.grid else [cfg]
    for c in cells:
        rec = run(c, resume=args.resume)
        print(f"{rec['dataset']} {rec['mode']} lr={rec['lr']:g} seed={rec['seed']}: {rec['metric']} "
              f"{rec['value']:.2f}%  ({rec['wall_time_s']:.0f} s; record: {Path(c.OUTPUT_DIR) / 'result.json'})")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
