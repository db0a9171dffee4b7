"""Standard (eps = 0) and adversarial ImageNet-style pretraining of any registry architecture.

    python -m rdet.pretrain                              # offline demo: Fashion-MNIST 0-4, ResNet-18
    python -m rdet.pretrain --data /data/imagenet --arch resnet50 --eps 3 --norm l2
    torchrun --nproc_per_node 8 -m rdet.pretrain --config-file configs/pretrain_imagenet_r50.yaml

Paper defaults (appendix A.1) come from ``rdet.config.get_pretrain_cfg``. Adversarial training
replaces each batch by PGD examples (ADV.STEPS steps of ADV.STEP_SIZE_FACTOR * eps) before the
forward. The output directory holds ``last_checkpoint.pth`` (every epoch, for ``--resume``),
``model_final.pth`` (an rdet checkpoint the backbone registry, ``rdet.classify`` and
``tools/convert_backbone.py`` read), TensorBoard events and ``result.json``.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any, Dict, Optional, Sequence

import torch

from rdet.atomic import torch_save
from rdet.attacks import NORMS, make_perturb
from rdet.backbones import create_classifier
from rdet.cli import run_cli
from rdet.config import CONFIG_DIR, get_pretrain_cfg, merge_config
from rdet.engine import (FINAL, LAST, apply_bn_mode, build_loader, build_optimizer, build_scheduler, evaluate,
                         load_state, prepare_bn, rdet_checkpoint, resume_point, save_state, setup_runtime,
                         train_one_epoch)
from rdet.engine.datasets import datasets_from_cfg
from rdet.errors import ConfigError
from rdet.records import write_record

DEMO_CONFIG = CONFIG_DIR / "pretrain_demo.yaml"


def _check(cfg) -> None:
    if cfg.ADV.NORM not in NORMS:
        raise ConfigError(f"ADV.NORM must be one of {', '.join(NORMS)}, not {cfg.ADV.NORM!r}")
    if cfg.ADV.EPS < 0:
        raise ConfigError("ADV.EPS must be >= 0")


def run(cfg, resume: bool = False) -> Dict[str, Any]:
    """Train, checkpoint every epoch, evaluate clean and PGD accuracy, write the result record."""
    _check(cfg)
    start = time.time()
    rt = setup_runtime(cfg)
    torch.manual_seed(cfg.SEED)
    out = Path(cfg.OUTPUT_DIR)
    train_ds, test_ds, num_classes, note = datasets_from_cfg(cfg)
    # MODEL.WEIGHTS: start from a checkpoint (continue or fine-tune) instead of random init.
    init = create_classifier(cfg.MODEL.ARCH, num_classes, weights=cfg.MODEL.WEIGHTS or None,
                             allow_pickle=cfg.MODEL.ALLOW_PICKLE)
    model = rt.prepare(prepare_bn(init, cfg.MODEL.BN, rt))
    ddp = rt.wrap_ddp(model)
    optimizer = build_optimizer(model.parameters(), cfg)
    scheduler = build_scheduler(optimizer, cfg)
    meta = {"arch": cfg.MODEL.ARCH, "norm": cfg.ADV.NORM, "eps": float(cfg.ADV.EPS), "dataset": cfg.DATA.DATASET,
            "classes": list(cfg.DATA.CLASSES), "mean": list(model.spec.mean), "std": list(model.spec.std),
            "input_size": cfg.DATA.TRAIN_SIZE}
    first = 0
    last = resume_point(out, resume)
    if last is not None:
        first = load_state(last, model, optimizer, scheduler)
    train_loader = build_loader(train_ds, cfg, rt, train=True, seed=cfg.SEED)
    test_loader = build_loader(test_ds, cfg, rt, train=False)
    eps = float(cfg.ADV.EPS)
    perturb = None
    if eps > 0:
        perturb = make_perturb(eps, cfg.ADV.NORM, cfg.ADV.STEPS, cfg.ADV.STEP_SIZE_FACTOR * eps,
                               rand_init=cfg.ADV.RANDOM_START, autocast=rt.autocast)
    writer = _writer(out, rt)
    if rt.is_main:
        out.mkdir(parents=True, exist_ok=True)
        kind = f"adversarial ({cfg.ADV.NORM}, eps={eps:g}, {cfg.ADV.STEPS} PGD steps)" if eps else "standard"
        print(f"pretrain {cfg.MODEL.ARCH}: {kind} on {note}; epochs {first + 1}..{cfg.SOLVER.EPOCHS}")
    for epoch in range(first, cfg.SOLVER.EPOCHS):
        train_loader.sampler.set_epoch(epoch)
        ddp.train()
        apply_bn_mode(ddp, cfg.MODEL.BN)
        stats = train_one_epoch(ddp, train_loader, optimizer, rt, epoch, perturb=perturb, writer=writer,
                                scaler=None, log_every=cfg.RUNTIME.LOG_EVERY, desc="pretrain")
        scheduler.step()
        if rt.is_main:
            save_state(out / LAST, model, optimizer, scheduler, epoch, meta)
            print(f"epoch {epoch + 1}/{cfg.SOLVER.EPOCHS}: loss {stats['loss']:.3f} train acc {stats['acc']:.1f}% "
                  f"lr {optimizer.param_groups[0]['lr']:.3g}")
    clean = evaluate(model, test_loader, rt, num_classes)
    robust = None
    if eps > 0:
        attack = make_perturb(eps, cfg.ADV.NORM, cfg.ADV.EVAL_STEPS, rand_init=True, autocast=rt.autocast)
        robust = evaluate(model, test_loader, rt, num_classes, perturb=attack)["top1"]
    record = {"task": "pretrain", "dataset": cfg.DATA.DATASET, "data_note": note,
              "backbone": {"arch": cfg.MODEL.ARCH, "norm": cfg.ADV.NORM, "eps": eps, "source": str(out / FINAL)},
              "metric": "top1", "value": clean["top1"], "robust_top1": robust,
              "robust_attack": f"PGD-{cfg.ADV.EVAL_STEPS} {cfg.ADV.NORM} eps={eps:g}" if eps else None,
              "epochs": cfg.SOLVER.EPOCHS, "lr": cfg.SOLVER.BASE_LR, "seed": cfg.SEED,
              "wall_time_s": time.time() - start, "checkpoint": str(out / FINAL)}
    if rt.is_main:
        torch_save(rdet_checkpoint(model, dict(meta, epoch=cfg.SOLVER.EPOCHS - 1)), out / FINAL)
        write_record(out, record)
        if writer is not None:
            writer.close()
    return record


def _writer(out: Path, rt):
    if not rt.is_main:
        return None
    from torch.utils.tensorboard import SummaryWriter

    out.mkdir(parents=True, exist_ok=True)
    return SummaryWriter(str(out / "tb"))


def build_cfg(argv: Optional[Sequence[str]] = None):
    p = argparse.ArgumentParser(prog="python -m rdet.pretrain", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config-file", help=f"YAML config (default with no arguments: {DEMO_CONFIG.name})")
    p.add_argument("--arch", help="registry architecture (python -m rdet.backbones list)")
    p.add_argument("--data", help="dataset root (ImageNet layout: train/<wnid>/, val/<wnid>/)")
    p.add_argument("--dataset", help="dataset name: imagenet (default with --data), fashion_mnist, digits, ...")
    p.add_argument("--eps", type=float, help="attack radius for [0,1] images; 0 = standard training")
    p.add_argument("--norm", choices=NORMS)
    p.add_argument("--output-dir")
    p.add_argument("--resume", action="store_true", help="continue from OUTPUT_DIR/last_checkpoint.pth")
    p.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE overrides, e.g. SOLVER.EPOCHS 5")
    args = p.parse_args(argv)
    cfg = get_pretrain_cfg()
    config_file = args.config_file
    if config_file is None and args.data is None and args.dataset is None:
        config_file = str(DEMO_CONFIG)
    merge_config(cfg, config_file, args.opts)
    for key, val in (("MODEL.ARCH", args.arch), ("DATA.ROOT", args.data), ("ADV.EPS", args.eps),
                     ("ADV.NORM", args.norm), ("OUTPUT_DIR", args.output_dir)):
        if val is not None:
            merge_config(cfg, None, [key, str(val)])
    if args.dataset or args.data:
        cfg.DATA.DATASET = args.dataset or "imagenet"
    return cfg, args.resume


def main(argv: Optional[Sequence[str]] = None) -> int:
    cfg, resume = build_cfg(argv)
    rec = run(cfg, resume=resume)
    robust = f", PGD accuracy {rec['robust_top1']:.1f}% ({rec['robust_attack']})" if rec["robust_top1"] is not None else ""
    print(f"done: clean accuracy {rec['value']:.1f}%{robust}; data: {rec['data_note']}")
    print(f"weights: {rec['checkpoint']}  record: {Path(cfg.OUTPUT_DIR) / 'result.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
