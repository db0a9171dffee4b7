"""Cheap robust backbones: standard, PGD-3, FGSM-RS and free adversarial training at the same eps
(one L2, one Linf), same data, epochs and seeds, in one process. Prints, per method, mean over
seeds of: the training loop's time (and its ratio to PGD-3's; evaluations and the overfitting
guard's measurements excluded), the whole run's wall time, clean accuracy, PGD-10 accuracy, then
transfer of each backbone to Fashion-MNIST 5-9 and digits, fixed-feature and full-network.

Data (offline): pretraining on Fashion-MNIST classes 0-4, ResNet-18, 32 px; transfer targets
Fashion-MNIST classes 5-9 and scikit-learn's digits. Miniature: the point is the relative cost
and robustness of the methods, not ImageNet numbers.

    python benchmarks/bench_adv_methods.py [--epochs 8] [--seeds 0 1] [--max-train 2000]
"""
import argparse
import statistics
import tempfile
from pathlib import Path

from rdet.cli import pretrain as pretrain_cli
from rdet.tasks import pretrain, transfer as classify
from rdet.config import get_transfer_cfg

SETTINGS = {"l2": 0.5, "linf": 4 / 255}
METHODS = ("pgd", "fgsm_rs", "free")
TARGETS = {"fmnist[5-9]": ["DATA.DATASET", "fashion_mnist", "DATA.CLASSES", "[5,6,7,8,9]"],
           "digits": ["DATA.DATASET", "digits"]}


def _pretrain(out, norm, eps, method, seed, args):
    cfg, _ = pretrain_cli.build_cfg([
        "OUTPUT_DIR", str(out), "ADV.NORM", norm, "ADV.EPS", str(eps), "ADV.METHOD", method, "SEED", str(seed),
        "SOLVER.EPOCHS", str(args.epochs), "SOLVER.LR_STEP_EPOCHS", str(max(1, args.epochs - 1)),
        "DATA.MAX_TRAIN", str(args.max_train), "DATA.MAX_TEST", "400", "ADV.EVAL_STEPS", "10",
        "ADV.FREE_REPLAYS", "4", "ADV.GUARD_SAMPLES", "128", "SOLVER.BATCH_SIZE", "64"])
    return pretrain.run(cfg)


def _transfer(out, weights, data, mode, seed):
    cfg = get_transfer_cfg()
    cfg.merge_from_list(data + ["DATA.TRAIN_SIZE", "32", "DATA.TEST_RESIZE", "32", "DATA.CROP_SCALE_MIN", "0.5",
                                "DATA.NUM_WORKERS", "0", "DATA.MAX_TRAIN", "600", "DATA.MAX_TEST", "600",
                                "MODEL.ARCH", "resnet18", "MODEL.WEIGHTS", str(weights), "TRANSFER.MODE", mode,
                                "TRANSFER.CACHE_FEATURES", "True", "TRANSFER.CACHE_VIEWS", "2",
                                "TRANSFER.EVAL_EVERY", "0", "SOLVER.EPOCHS", "20" if mode == "fixed" else "2",
                                "SOLVER.LR_STEP_EPOCHS", "10" if mode == "fixed" else "1", "SEED", str(seed),
                                "OUTPUT_DIR", str(out)])
    return classify.run(cfg)["value"]


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--max-train", type=int, default=2000)
    args = p.parse_args()
    work = Path(tempfile.mkdtemp())
    runs = [("standard", "l2", 0.0, "pgd")] + [(m, n, e, m) for n, e in SETTINGS.items() for m in METHODS]
    cols = [f"{t} {m}" for t in TARGETS for m in ("fixed", "full")]
    print(f"ResNet-18, Fashion-MNIST 0-4 at 32 px, {args.max_train} images, batch 64, {args.epochs} epochs, seeds {args.seeds}; "
          "transfer: fixed = 20 epochs on a 2-view feature cache, full = 2 epochs, 600 images", flush=True)
    print(f"{'method':<10}{'norm':<6}{'eps':>7} {'train s':>7} {'vs PGD':>7} {'total s':>7} {'clean':>6} "
          f"{'PGD-10':>9} " + " ".join(f"{c:>13}" for c in cols), flush=True)
    pgd_time = {}
    for label, norm, eps, method in runs:
        recs, transfer = [], {c: [] for c in cols}
        for seed in args.seeds:
            out = work / f"{label}_{norm}_{seed}"
            rec = _pretrain(out, norm, eps, method, seed, args)
            recs.append(rec)
            for t, data in TARGETS.items():
                for mode in ("fixed", "full"):
                    transfer[f"{t} {mode}"].append(
                        _transfer(work / f"{label}_{norm}_{seed}_{t}_{mode}", out / "model_final.pth", data, mode, seed))
        t = statistics.mean(r["train_time_s"] for r in recs)
        total = statistics.mean(r["wall_time_s"] for r in recs)
        if method == "pgd" and eps > 0:
            pgd_time[norm] = t
        ratio = f"{t / pgd_time[norm]:.2f}x" if norm in pgd_time and eps > 0 else "-"
        rob = [r["robust_top1"] for r in recs] if eps > 0 else [float("nan")]
        robust = f"{statistics.mean(rob):.1f}" + (f"±{statistics.stdev(rob):.1f}" if len(rob) > 1 else "")
        fired = sum(bool((r.get("overfit_guard") or {}).get("fired")) for r in recs)
        print(f"{label:<10}{norm if eps else '-':<6}{eps:>7.4f} {t:>7.1f} {ratio:>7} {total:>7.1f} "
              f"{statistics.mean(r['value'] for r in recs):>6.1f} {robust:>9} " +
              " ".join(f"{statistics.mean(transfer[c]):>13.1f}" for c in cols) + (f"  (guard fired {fired}x)" if fired else ""), flush=True)


if __name__ == "__main__":
    main()
