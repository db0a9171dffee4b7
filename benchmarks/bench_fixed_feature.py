"""Fixed-feature transfer: cached-feature path against the per-epoch (paper protocol) path, on the
same data and schedule, in one process. Prints wall times, their ratio and both accuracies.

Data: scikit-learn's digits (1347 train / 450 test) at 32 px, from a ResNet-18 pretrained on
Fashion-MNIST classes 0-4 by `rdet.pretrain`'s offline demo (trained here first if missing).

    python benchmarks/bench_fixed_feature.py [--epochs 30]
"""
import argparse
import tempfile
from pathlib import Path

from rdet import classify, pretrain
from rdet.config import get_transfer_cfg


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--epochs", type=int, default=30)
    args = p.parse_args()
    work = Path(tempfile.mkdtemp())
    pcfg, _ = pretrain.build_cfg(["OUTPUT_DIR", str(work / "pre")])
    pretrain.run(pcfg)
    results = {}
    for name, cached in (("per-epoch", False), ("cached", True)):
        cfg = get_transfer_cfg()
        cfg.merge_from_list(["DATA.DATASET", "digits", "DATA.TRAIN_SIZE", "32", "DATA.TEST_RESIZE", "32",
                             "DATA.CROP_SCALE_MIN", "0.5", "DATA.NUM_WORKERS", "0", "MODEL.ARCH", "resnet18",
                             "MODEL.WEIGHTS", str(work / "pre" / "model_final.pth"), "TRANSFER.MODE", "fixed",
                             "TRANSFER.CACHE_FEATURES", str(cached), "TRANSFER.CACHE_VIEWS", "1",
                             "SOLVER.EPOCHS", str(args.epochs), "SOLVER.LR_STEP_EPOCHS", str(max(1, args.epochs // 3)),
                             "OUTPUT_DIR", str(work / name)])
        results[name] = classify.run(cfg)
    slow, fast = results["per-epoch"], results["cached"]
    print(f"fixed-feature transfer, digits 32px, ResNet-18, {args.epochs} epochs, batch 64")
    print(f"  per-epoch (paper protocol): {slow['wall_time_s']:7.1f} s  top-1 {slow['value']:.2f}%")
    print(f"  cached features (1 view):   {fast['wall_time_s']:7.1f} s  top-1 {fast['value']:.2f}%")
    print(f"  speed-up: {slow['wall_time_s'] / fast['wall_time_s']:.1f}x (target >= 20x)")


if __name__ == "__main__":
    main()
