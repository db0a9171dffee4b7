"""``rdet-pretrain`` / ``python -m rdet pretrain``: standard and adversarial pretraining
(:mod:`rdet.tasks.pretrain`).

    python -m rdet pretrain                              # offline demo: Fashion-MNIST 0-4, ResNet-18
    python -m rdet pretrain --data-root /data/imagenet --arch resnet50 --eps 3 --norm l2
    torchrun --nproc_per_node 8 -m rdet pretrain --config-file configs/pretrain_imagenet_r50.yaml
    python -m rdet pretrain ... ADV.METHOD fgsm_rs       # fast adversarial training (Wong et al.)
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Optional, Sequence

from rdet.cli import ArgumentParser, add_data_root, choices, entry_point, is_main_process, module_doc, parse_with_overrides
from rdet.config import CONFIG_DIR, build_config, get_pretrain_cfg

DEMO_CONFIG = CONFIG_DIR / "pretrain_demo.yaml"


def build_cfg(argv: Optional[Sequence[str]] = None):
    p = ArgumentParser(prog="python -m rdet pretrain", description=module_doc("rdet.tasks.pretrain"),
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config-file", help=f"YAML config (default with no arguments: {DEMO_CONFIG.name})")
    p.add_argument("--arch", help="registry architecture (python -m rdet backbones list)")
    add_data_root(p, "dataset root (ImageNet layout: train/<wnid>/, val/<wnid>/)")
    p.add_argument("--dataset", help="dataset name: imagenet (default with --data-root), fashion_mnist, digits, ...")
    p.add_argument("--eps", type=float, help="attack radius for [0,1] images; 0 = standard training")
    p.add_argument("--norm", choices=choices("ADV.NORM"))
    p.add_argument("--method", choices=choices("ADV.METHOD"), help="adversarial training method (ADV.METHOD)")
    p.add_argument("--output-dir")
    p.add_argument("--resume", action="store_true", help="continue from OUTPUT_DIR/last_checkpoint.pth")
    p.add_argument("--allow-pickle", action="store_true", help="full unpickling of MODEL.WEIGHTS (trusted files only)")
    args = parse_with_overrides(p, argv)
    from rdet.engine.runtime import restarted_by_torchrun

    config_file = args.config_file
    if config_file is None and args.data_root is None and args.dataset is None:
        config_file = str(DEMO_CONFIG)
    dataset = args.dataset or ("imagenet" if args.data_root else None)
    cfg = build_config(get_pretrain_cfg(), config_file,
                       {"MODEL.ARCH": args.arch, "DATA.ROOT": args.data_root, "DATA.DATASET": dataset, "ADV.EPS": args.eps,
                        "ADV.NORM": args.norm, "ADV.METHOD": args.method, "OUTPUT_DIR": args.output_dir,
                        "MODEL.ALLOW_PICKLE": True if args.allow_pickle else None}, args.opts)
    return cfg, args.resume or restarted_by_torchrun()  # a torchrun restart resumes


def _main(argv: Optional[Sequence[str]] = None) -> int:
    cfg, resume = build_cfg(argv)
    from rdet.tasks.pretrain import run

    rec = run(cfg, resume=resume)
    if not is_main_process():
        return 0
    robust = f", PGD accuracy {rec['robust_top1']:.1f}% ({rec['robust_attack']})" if rec["robust_top1"] is not None else ""
    guard = rec.get("overfit_guard") or {}
    if guard.get("fired"):
        print(f"overfitting guard: stopped after epoch {guard['stopped_after']}, kept epoch {guard['best_epoch']}")
    print(f"done: clean accuracy {rec['value']:.1f}%{robust}; data: {rec['data_note']}")
    print(f"weights: {rec['checkpoint']}  record: {Path(cfg.OUTPUT_DIR) / 'result.json'}")
    return 0


main = entry_point(_main)


if __name__ == "__main__":
    raise SystemExit(main())
