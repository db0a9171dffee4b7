"""Fixed-feature transfer: the paper's per-epoch protocol (a fresh augmented view of every image
each epoch) against the feature cache with K views, same data, schedule and seeds, in one process.
Prints accuracy (mean and [min, max] over seeds), wall time and the speed-up over the protocol,
per dataset, then which K (if any) matches the protocol within the seed spread at >= 10x its speed.

Data: Fashion-MNIST classes 5-9 and scikit-learn's digits at 32 px (both offline), from the
ResNet-18 that `rdet.pretrain`'s offline demo trains on Fashion-MNIST classes 0-4 (trained here).

    python benchmarks/bench_fixed_feature.py [--epochs 30] [--seeds 0 1 2] [--views 1 5 20]
"""
import argparse
import statistics
import tempfile
from pathlib import Path

from rdet.cli import pretrain as pretrain_cli
from rdet.tasks import pretrain, transfer as classify
from rdet.config import get_transfer_cfg

DATASETS = {"fashion_mnist[5-9]": ["DATA.DATASET", "fashion_mnist", "DATA.CLASSES", "[5,6,7,8,9]"],
            "digits": ["DATA.DATASET", "digits"]}


def _run(work, weights, data, name, seed, epochs, views, max_train):
    cfg = get_transfer_cfg()
    cfg.merge_from_list(data + ["DATA.TRAIN_SIZE", "32", "DATA.TEST_RESIZE", "32", "DATA.CROP_SCALE_MIN", "0.5",
                                "DATA.NUM_WORKERS", "0", "DATA.MAX_TRAIN", str(max_train), "DATA.MAX_TEST", "1000",
                                "MODEL.ARCH", "resnet18", "MODEL.WEIGHTS", str(weights), "TRANSFER.MODE", "fixed",
                                "TRANSFER.CACHE_FEATURES", str(views > 0), "TRANSFER.CACHE_VIEWS", str(max(views, 1)),
                                "TRANSFER.EVAL_EVERY", "0", "SOLVER.EPOCHS", str(epochs),
                                "SOLVER.LR_STEP_EPOCHS", str(max(1, epochs // 3)), "SEED", str(seed),
                                "OUTPUT_DIR", str(work / f"{name}_{views}_{seed}")])
    return classify.run(cfg)


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--views", type=int, nargs="+", default=[1, 5, 20])
    p.add_argument("--max-train", type=int, default=1000)
    args = p.parse_args()
    work = Path(tempfile.mkdtemp())
    pcfg, _ = pretrain_cli.build_cfg(["OUTPUT_DIR", str(work / "pre")])
    pretrain.run(pcfg)
    weights = work / "pre" / "model_final.pth"
    print(f"fixed-feature transfer, ResNet-18 (Fashion-MNIST 0-4 demo pretraining), 32 px, {args.epochs} epochs, "
          f"batch 64, <= {args.max_train} train images, seeds {args.seeds}")
    print(f"{'dataset':<20} {'protocol':<22} {'top-1 mean [min, max]':<26} {'time/run':>9} {'speed-up':>9}")
    for name, data in DATASETS.items():
        rows = {}
        for views in [0] + args.views:  # 0: the per-epoch protocol
            recs = [_run(work, weights, data, name, s, args.epochs, views, args.max_train) for s in args.seeds]
            accs = [r["value"] for r in recs]
            rows[views] = (accs, statistics.mean(r["wall_time_s"] for r in recs), recs[0]["protocol"])
        base_accs, base_t, _ = rows[0]
        lo, hi = min(base_accs), max(base_accs)
        for views, (accs, t, label) in rows.items():
            m = statistics.mean(accs)
            print(f"{name:<20} {label:<22} {m:6.2f} [{min(accs):.2f}, {max(accs):.2f}]{'':<7} {t:8.1f}s "
                  f"{base_t / t:8.1f}x")
        ok = [v for v in args.views if lo <= statistics.mean(rows[v][0]) <= hi and base_t / rows[v][1] >= 10]
        print(f"{name:<20} K within the protocol's seed range at >= 10x: {ok or 'none'}")


if __name__ == "__main__":
    main()
