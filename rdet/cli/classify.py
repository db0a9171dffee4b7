"""``rdet-classify`` / ``python -m rdet classify``: fixed-feature or full-network transfer
(:mod:`rdet.tasks.transfer`).

    python -m rdet classify                      # offline demo (Fashion-MNIST 5-9)
    python -m rdet classify --dataset cifar10 --data-root /data --arch resnet50 \
        --weights resnet50_l2_eps3 --mode fixed --output-dir output/c10_fixed
    python -m rdet classify --config-file configs/classify_paper.yaml --grid ...   # lr x seed grid
    torchrun --nproc_per_node 4 -m rdet classify --mode full ...
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Optional, Sequence

from rdet.cli import ArgumentParser, add_data_root, choices, entry_point, is_main_process, module_doc, parse_with_overrides
from rdet.config import CONFIG_DIR, build_config, get_pretrain_cfg, get_transfer_cfg

logger = logging.getLogger(__name__)

DEMO_CONFIG = CONFIG_DIR / "classify_demo.yaml"


def build_cfg(argv: Optional[Sequence[str]] = None):
    p = ArgumentParser(prog="python -m rdet classify", description=module_doc("rdet.tasks.transfer"),
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config-file", help=f"YAML config (default with no data arguments: {DEMO_CONFIG.name})")
    p.add_argument("--dataset", help="aircraft, birdsnap, caltech101, caltech256, cars, cifar10, cifar100, dtd, "
                                     "flowers, food, pets, sun397, imagefolder, fashion_mnist, digits")
    add_data_root(p, "folder holding the dataset")
    p.add_argument("--arch")
    p.add_argument("--weights", help="catalog name (python -m rdet backbones catalog) or checkpoint file")
    p.add_argument("--mode", choices=choices("TRANSFER.MODE"))
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
    weights = Path(cfg.MODEL.WEIGHTS)
    if weights.is_file():
        return
    from rdet.tasks import pretrain

    logger.info("demo: no %s yet; pretraining it first (python -m rdet pretrain, offline demo)", weights)
    pretrain.run(build_config(get_pretrain_cfg(), str(CONFIG_DIR / "pretrain_demo.yaml"), None,
                              ["OUTPUT_DIR", str(weights.parent)]))


def _main(argv: Optional[Sequence[str]] = None) -> int:
    cfg, args, demo = build_cfg(argv)
    from rdet.engine.runtime import restarted_by_torchrun
    from rdet.tasks.transfer import grid_cells, run

    if demo:
        _demo_weights(cfg)
    cells = grid_cells(cfg) if args.grid else [cfg]
    for c in cells:
        rec = run(c, resume=args.resume or restarted_by_torchrun())  # a torchrun restart resumes
        if is_main_process():
            print(f"{rec['dataset']} {rec['mode']} ({rec['protocol']}) lr={rec['lr']:g} seed={rec['seed']}: "
                  f"{rec['metric']} {rec['value']:.2f}% at the final epoch (best periodic {rec['best_value']:.2f}% at "
                  f"epoch {rec['best_epoch']})  ({rec['wall_time_s']:.0f} s; record: {Path(c.OUTPUT_DIR) / 'result.json'})")
    return 0


main = entry_point(_main)


if __name__ == "__main__":
    raise SystemExit(main())
