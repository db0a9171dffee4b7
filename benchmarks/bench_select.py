"""Per-model cost of rdet.select's fixed-feature selection against the paper's per-epoch
fixed-feature protocol over the same learning-rate grid, measured in one process.

* selection: features extracted once (SELECT.VIEWS augmented views of the training part, one
  centre-crop pass over the training set, one over the test set), then an SGD head per lr on the
  cache (and, reported separately, the L-BFGS logistic-regression sweep);
* baseline: ``rdet.classify`` per lr with ``TRANSFER.CACHE_FEATURES False`` (the backbone runs on a
  fresh augmentation of every image every epoch), same optimizer, epochs and schedule.

Data: Fashion-MNIST classes 5-9 at 32 px (rdet/configs/select_demo.yaml, Debian's package, no
download), a ResNet-18 with random weights (the cost does not depend on the weights).

    python benchmarks/bench_select.py [--epochs 30] [--max-train 2000] [--views 5]
"""
import argparse
import tempfile
import time
from pathlib import Path

import torch

from rdet.tasks import transfer as classify
from rdet.backbones import get_spec
from rdet.config import CONFIG_DIR, get_transfer_cfg, merge_config
from rdet.select import get_select_cfg, select_one


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--max-train", type=int, default=2000)
    p.add_argument("--views", type=int, default=5)
    args = p.parse_args()
    work = Path(tempfile.mkdtemp())
    torch.manual_seed(0)
    weights = work / "resnet18.pth"
    torch.save(get_spec("resnet18").builder(1000).state_dict(), weights)
    common = ["MODEL.WEIGHTS", str(weights), "DATA.MAX_TRAIN", str(args.max_train), "DATA.MAX_TEST", "1000",
              "SOLVER.EPOCHS", str(args.epochs), "SOLVER.LR_STEP_EPOCHS", str(max(1, args.epochs // 3)),
              "TRANSFER.LR_GRID", "[0.01, 0.001]"]
    config = str(CONFIG_DIR / "select_demo.yaml")

    cfg = merge_config(get_select_cfg(), config, common + ["SELECT.VIEWS", str(args.views)])
    grid = list(cfg.TRANSFER.LR_GRID)
    t = time.time()
    sel = select_one(cfg, str(weights), work / "cache", "bench")
    sel_time = time.time() - t
    sgd_time = sel["extract_time_s"] + sum(c["time_s"] for c in sel["candidates"] if c["head"] == "sgd")
    lbfgs_time = sum(c["time_s"] for c in sel["candidates"] if c["head"] == "logreg")

    base_time, base_acc = 0.0, {}
    for lr in grid:
        ccfg = merge_config(get_transfer_cfg(), config, common + [
            "TRANSFER.MODE", "fixed", "TRANSFER.CACHE_FEATURES", "False", "TRANSFER.EVAL_EVERY", "0",
            "SOLVER.BASE_LR", str(lr), "OUTPUT_DIR", str(work / f"classify_lr{lr:g}")])
        t = time.time()
        rec = classify.run(ccfg)
        base_time += time.time() - t
        base_acc[lr] = rec["value"]

    print(f"one model (ResNet-18, random weights), Fashion-MNIST 5-9 at 32 px, {sel['n_train']} + {sel['n_val']} "
          f"validation training images, {sel['n_test']} test; lr grid {grid}, {args.epochs} epochs, batch "
          f"{cfg.SOLVER.BATCH_SIZE}; {torch.get_num_threads()} CPU threads")
    print(f"  per-epoch protocol (rdet.classify, CACHE_FEATURES False), {len(grid)} runs: {base_time:7.1f} s; "
          f"test top-1 " + ", ".join(f"lr {lr:g}: {a:.2f}%" for lr, a in base_acc.items()))
    print(f"  rdet.select, {args.views} views, extraction {sel['extract_time_s']:.1f} s + SGD heads: {sgd_time:7.1f} s; "
          f"test top-1 " + ", ".join(f"lr {c['lr']:g}: {c['test']:.2f}%" for c in sel["candidates"] if c["head"] == "sgd"))
    print(f"  + L-BFGS logistic regression ({len(cfg.SELECT.LOGREG_L2)} penalties): {lbfgs_time:.1f} s "
          f"(whole selection incl. data set-up: {sel_time:.1f} s)")
    print(f"  ratio per-epoch / selection (extraction + SGD heads): {base_time / sgd_time:.1f}x; "
          f"with L-BFGS: {base_time / (sgd_time + lbfgs_time):.1f}x")


if __name__ == "__main__":
    main()
