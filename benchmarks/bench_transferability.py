"""Transferability estimators on a zoo of one architecture across robustness levels: do they pick
the backbone that fine-tuning would pick, and how much cheaper are they?

Zoo (rdet.pretrain, offline): ResNet-18s trained on Fashion-MNIST classes 0-4 at ``--size`` px --
eps 0; L2 PGD at 0.1, 0.25, 0.5, 1; Linf PGD at 1, 2, 4, 8 /255; Linf FGSM-RS at 2 and 8 /255
(11 models, all the same size, so ranking by size says nothing).
Targets (offline): Fashion-MNIST classes 5-9, scikit-learn's digits, and ``photos``: 32 px crops
of scikit-image's eight bundled photographs, one class per photograph (an ImageFolder written here).
Ground truth, per target and model: the paper's protocol at reduced epochs (``rdet.classify``,
fixed-feature and full-network, test accuracy at the best learning rate of ``--lrs-*``, mean over
``--seeds``). Estimators (``rdet.select``): features extracted once per model and target
(``select_one``: one augmented view, a centre-crop pass, the test pass), then every estimator;
``linear`` is the selection's own validation-split heads; ``size`` ranks by parameter count.

Printed per target and protocol: Kendall tau, weighted tau, top-1 regret (points) and cost
(seconds of extraction + scoring; ratio: the protocol's seconds over every model / the estimator's),
then the report section (rdet.report.transferability) with which estimator, if any, is within
1 point of the best backbone at >= 50x less compute. Everything is kept in ``--work`` (zoo, caches,
runs, ``records.json``); a rerun reuses finished models and runs.

    python benchmarks/bench_transferability.py [--work output/bench_transferability] [--size 16] [--epochs 3]
    python benchmarks/bench_transferability.py [--pretrain-epochs 2] [--seeds 3] [--max-train 1000] [--models 11]
    python benchmarks/bench_transferability.py [--targets fmnist59 digits photos]
"""
import argparse
import json
import time
from pathlib import Path

ZOO = [  # name, norm, eps (images in [0, 1]), method
    ("eps0", "l2", 0.0, "pgd"),
    ("l2_0.1", "l2", 0.1, "pgd"), ("l2_0.25", "l2", 0.25, "pgd"), ("l2_0.5", "l2", 0.5, "pgd"),
    ("l2_1", "l2", 1.0, "pgd"),
    ("linf_1", "linf", 1 / 255, "pgd"), ("linf_2", "linf", 2 / 255, "pgd"), ("linf_4", "linf", 4 / 255, "pgd"),
    ("linf_8", "linf", 8 / 255, "pgd"),
    ("fgsmrs_linf_2", "linf", 2 / 255, "fgsm_rs"), ("fgsmrs_linf_8", "linf", 8 / 255, "fgsm_rs"),
]
TARGETS = {"fmnist59": ["DATA.DATASET", "fashion_mnist", "DATA.CLASSES", "[5, 6, 7, 8, 9]"],
           "digits": ["DATA.DATASET", "digits"],
           "photos": ["DATA.DATASET", "imagefolder"]}
ESTIMATORS = ["linear", "logme", "leep", "nleep", "nce", "hscore", "sfda", "knn"]


def parse():
    def positive(v):
        if int(v) < 1:
            raise argparse.ArgumentTypeError(f"{v}: must be at least 1")
        return int(v)

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", default="output/bench_transferability", help="zoo, caches, runs and records.json")
    p.add_argument("--size", type=positive, default=16, help="image size of pretraining and targets (px)")
    p.add_argument("--pretrain-epochs", type=positive, default=2)
    p.add_argument("--pretrain-images", type=positive, default=2000)
    p.add_argument("--epochs", type=positive, default=3, help="epochs of every ground-truth transfer run")
    p.add_argument("--seeds", type=positive, default=3, help="ground truth: mean over this many seeds")
    p.add_argument("--lrs-fixed", type=float, nargs="+", default=[0.1])
    p.add_argument("--lrs-full", type=float, nargs="+", default=[0.01])
    p.add_argument("--max-train", type=positive, default=1000, help="target training images")
    p.add_argument("--models", type=positive, default=len(ZOO), help=f"the first N of the {len(ZOO)}-model zoo")
    p.add_argument("--targets", nargs="+", choices=sorted(TARGETS), default=list(TARGETS))
    return p.parse_args()


def pretrain_zoo(args, work: Path):
    """``{name: model_final.pth}``, each trained unless already there."""
    from rdet.config import CONFIG_DIR, get_pretrain_cfg, merge_config
    from rdet.tasks import pretrain

    out = {}
    for name, norm, eps, method in ZOO[:args.models]:
        final = work / "zoo" / name / "model_final.pth"
        if not final.is_file():
            cfg = merge_config(get_pretrain_cfg(), str(CONFIG_DIR / "pretrain_demo.yaml"), [
                "OUTPUT_DIR", str(final.parent), "DATA.TRAIN_SIZE", str(args.size), "DATA.TEST_RESIZE", str(args.size),
                "DATA.MAX_TRAIN", str(args.pretrain_images), "DATA.MAX_TEST", "500", "DATA.NUM_WORKERS", "2",
                "SOLVER.EPOCHS", str(args.pretrain_epochs),
                "SOLVER.LR_STEP_EPOCHS", str(max(1, args.pretrain_epochs - 1)),
                "ADV.NORM", norm, "ADV.EPS", repr(eps), "ADV.METHOD", method, "ADV.RANDOM_START", "True",
                "ADV.EVAL_STEPS", "3", "ADV.GUARD", "off"])
            t = time.time()
            rec = pretrain.run(cfg)
            print(f"pretrained {name}: clean {rec['value']:.2f}%, robust {rec['robust_top1'] or float('nan'):.2f}% "
                  f"({time.time() - t:.0f} s)", flush=True)
        out[name] = final
    return out


def write_photos(root: Path, size: int, per_class=(40, 20), seed: int = 0) -> Path:
    """``root/{train,test}/<photo>/*.png``: random square crops (a quarter to a half of the short
    side) of each bundled photograph, resized to ``size``; one class per photograph."""
    import numpy as np
    from PIL import Image

    from rdet.data.offline.photos import photos

    if (root / "test").is_dir():
        return root
    rng = np.random.default_rng(seed)
    for name, img in photos().items():
        h, w, _ = img.shape
        for split, n in zip(("train", "test"), per_class):
            (root / split / name).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                s = int(rng.integers(min(h, w) // 4, min(h, w) // 2))
                y, x = int(rng.integers(0, h - s)), int(rng.integers(0, w - s))
                Image.fromarray(img[y:y + s, x:x + s]).resize((size, size)).save(root / split / name / f"{i}.png")
    return root


def target_opts(args, target: str, work: Path):
    opts = ["DATA.TRAIN_SIZE", str(args.size), "DATA.TEST_RESIZE", str(args.size), "DATA.CROP_SCALE_MIN", "0.5",
            "DATA.MAX_TRAIN", str(args.max_train), "DATA.MAX_TEST", "1000", "DATA.NUM_WORKERS", "2",
            "SOLVER.EPOCHS", str(args.epochs), "SOLVER.LR_STEP_EPOCHS", str(max(1, args.epochs - 1)),
            "SOLVER.BATCH_SIZE", "64", *TARGETS[target]]
    if target == "photos":
        opts += ["DATA.ROOT", str(write_photos(work / "photos", 32))]
    return opts


def ground_truth(args, zoo, target: str, mode: str, work: Path):
    """``({model: accuracy at the best lr, mean over seeds}, seconds of every run)``."""
    from rdet.config import get_transfer_cfg, merge_config
    from rdet.core.records import read_record
    from rdet.tasks import transfer

    acc, seconds = {}, 0.0
    for name, weights in zoo.items():
        per_lr = {}
        for lr in (args.lrs_fixed if mode == "fixed" else args.lrs_full):
            vals = []
            for seed in range(args.seeds):
                out = work / "runs" / target / mode / name / f"lr{lr:g}_seed{seed}"
                if (out / "result.json").is_file():
                    rec = read_record(out / "result.json")
                else:
                    cfg = merge_config(get_transfer_cfg(), None, target_opts(args, target, work) + [
                        "MODEL.WEIGHTS", str(weights), "TRANSFER.MODE", mode, "SOLVER.BASE_LR", repr(lr),
                        "SEED", str(seed), "TRANSFER.EVAL_EVERY", "0", "OUTPUT_DIR", str(out)])
                    rec = transfer.run(cfg)
                vals.append(rec["value"])
                seconds += rec["wall_time_s"]
            per_lr[lr] = sum(vals) / len(vals)
        acc[name] = max(per_lr.values())
    return acc, seconds


def estimate(args, zoo, target: str, work: Path):
    """``{estimator: {"scores": {model: score}, "seconds": extraction + scoring over every model}}``."""
    from rdet.backbones import load_checkpoint
    from rdet.config import merge_config
    from rdet.select import get_select_cfg, select_one
    from rdet.select.scoring import score_record

    cfg = merge_config(get_select_cfg(), None, target_opts(args, target, work) + [
        "SELECT.VIEWS", "1", "TRANSFER.LR_GRID", "[0.1, 0.01]", "SELECT.LOGREG_L2", "[0.001]"])
    out = {n: {"scores": {}, "seconds": 0.0} for n in ESTIMATORS + ["size"]}
    for name, weights in zoo.items():
        rec = select_one(cfg, str(weights), work / "cache" / target, name)
        scores = score_record(rec, ESTIMATORS, cfg)
        for n, s in scores.items():  # every estimator pays the extraction (linear: its heads are its time_s)
            out[n]["scores"][name] = s["score"]
            out[n]["seconds"] += s["time_s"] + rec["extract_time_s"]
        out["size"]["scores"][name] = float(sum(v.numel() for v in load_checkpoint(weights).state_dict.values()))
    return out


def main():
    args = parse()
    from rdet.report.transferability import section
    from rdet.select.agreement import agreement

    work = Path(args.work)
    zoo = pretrain_zoo(args, work)
    records = []
    for target in args.targets:
        est = estimate(args, zoo, target, work)
        for mode in ("fixed", "full"):
            truth, protocol_s = ground_truth(args, zoo, target, mode, work)
            best = max(truth, key=truth.get)
            print(f"\n{target}, {mode} ground truth ({args.seeds} seeds, {args.epochs} epochs, {protocol_s:.0f} s): "
                  f"best {best} {truth[best]:.2f}%, worst {min(truth.values()):.2f}%")
            print(f"{'estimator':10s} {'tau':>7s} {'w.tau':>7s} {'regret':>7s} {'cost s':>8s} {'ratio':>7s}")
            for n, e in est.items():
                names = sorted(truth)
                a = agreement([e["scores"][m] for m in names], [truth[m] for m in names])
                ratio = protocol_s / e["seconds"] if e["seconds"] > 0 else float("inf")
                print(f"{n:10s} {a['tau']:7.3f} {a['weighted_tau']:7.3f} {a['regret']:7.2f} {e['seconds']:8.1f} "
                      f"{ratio:7.0f}")
                records.append({"dataset": target, "protocol": f"rdet {mode}", "estimator": n, **a,
                                "seconds": e["seconds"], "cost_ratio": ratio, "protocol_seconds": protocol_s})
    (work / "records.json").write_text(json.dumps(records, indent=1))
    print("\n" + section(records, "Transferability estimators on rdet's robust zoo"))


if __name__ == "__main__":
    main()
