"""s/iter of rdet's detection trainer (what tools/train_det.py runs) against a plain detectron2
DefaultTrainer, same config and data, one process, alternating runs to share machine noise.

Config: configs/demo_mask_r18_fpn.yaml (Mask R-CNN R18-FPN, 128 px, batch 4) from a converted
random-init ResNet-18, on rdet's composed detection set.

    python benchmarks/bench_train_det.py [--iters 20] [--rounds 2]
"""
import argparse
import tempfile
import time
from pathlib import Path

import torch
from detectron2.engine import DefaultTrainer

from rdet.backbones import get_spec
from rdet.convert import convert_to_detectron2
from rdet.detection.datasets import register_demo_dataset
from rdet.detection.train import build_cfg
from rdet.detection.trainer import Trainer

ROOT = Path(__file__).resolve().parents[1]


def seconds_per_iter(trainer_cls, cfg_file, weights, out, iters):
    cfg = build_cfg(cfg_file, ["MODEL.WEIGHTS", str(weights), "OUTPUT_DIR", str(out), "SOLVER.MAX_ITER", str(iters),
                               "DATASETS.TEST", "()", "SOLVER.CHECKPOINT_PERIOD", "100000"])
    cfg.freeze()
    trainer = trainer_cls(cfg)
    trainer.resume_or_load(resume=False)
    t = time.perf_counter()
    trainer.train()
    return (time.perf_counter() - t) / iters


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--iters", type=int, default=20)
    p.add_argument("--rounds", type=int, default=2)
    args = p.parse_args()
    work = Path(tempfile.mkdtemp())
    torch.save({"model": get_spec("resnet18").builder(10).state_dict(),
                "rdet": {"arch": "resnet18", "norm": "l2", "eps": 0.0}}, work / "r18.pth")
    weights = convert_to_detectron2(work / "r18.pth", work / "r18.pkl", verify=False).weights
    register_demo_dataset()
    cfg_file = str(ROOT / "configs" / "demo_mask_r18_fpn.yaml")
    res = {"rdet": [], "detectron2": []}
    for r in range(args.rounds):
        for name, cls in (("detectron2", DefaultTrainer), ("rdet", Trainer)):
            res[name].append(seconds_per_iter(cls, cfg_file, weights, work / f"{name}{r}", args.iters))
    d2, rd = min(res["detectron2"]), min(res["rdet"])
    print(f"Mask R-CNN R18-FPN, 128px, batch 4, {args.iters} iters x {args.rounds} rounds (best round)")
    print(f"  detectron2 DefaultTrainer: {d2:.3f} s/iter")
    print(f"  rdet Trainer:              {rd:.3f} s/iter")
    print(f"  ratio rdet/detectron2:     {rd / d2:.3f} (target <= 1.02)")


if __name__ == "__main__":
    main()
