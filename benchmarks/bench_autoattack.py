"""AutoAttack's cost and its gap to PGD, on this machine.

1. ``speed``: images/s of AutoAttack standard (pyautoattack through ``rdet.attacks.autoattack``)
   on ResNet-18 and ResNet-50 (random weights, 224 px, a tiny batch), beside PGD-20 in the same
   process. Labels are the model's own predictions and eps is tiny, so no attack succeeds and
   every image goes through all four attacks: the cost of an image that withstands AutoAttack
   (the worst case; on a non-robust model most images fall to APGD-CE, the first attack).
   AutoAttack runs a reduced budget (``--n-iter``, ``--n-queries``) and the time of the full
   budget (100 iterations of APGD-CE, 9 x 100 of APGD-T and of FAB-T, 5000 Square queries) is
   extrapolated from the measured per-step costs (one gradient step, one forward).
2. ``gap``: ``rdet pretrain`` trains a small Linf-robust ResNet-18 on the offline digits (16 px),
   then ``rdet evaluate --attack pgd autoattack`` measures both on the same test images.

    python benchmarks/bench_autoattack.py speed
    python benchmarks/bench_autoattack.py gap --images 64 --n-iter 20 --n-queries 500
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from rdet.attacks import pgd
from rdet.attacks.autoattack import AutoAttackRunner
from rdet.backbones import create_classifier

# full standard budget per robust image (10+ classes): gradient steps and forward-only queries
FULL_GRAD_STEPS = 100 + 9 * 100 + 9 * 100
FULL_QUERIES = 5000


def _timed(fn):
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def speed(args) -> None:
    torch.set_num_threads(args.threads)
    print(f"| model | px | images | PGD-20 img/s | AA standard, {args.n_iter} it / {args.n_queries} queries: "
          f"img/s | ratio | AA full budget (extrapolated): s/img | ratio |")
    print("|---|---|---|---|---|---|---|---|")
    for arch in args.archs:
        model = create_classifier(arch, 1000).eval()
        x = torch.rand(args.images, 3, args.size, args.size, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            y = model(x).argmax(1)
        with torch.no_grad():
            t_fwd = min(_timed(lambda: model(x)) for _ in range(2))
        t_pgd = _timed(lambda: pgd(model, x, y, 1e-6, "linf", 20, rand_init=True))
        runner = AutoAttackRunner(model, "linf", 1e-6, "standard", 1000, torch.device("cpu"), args.n_iter,
                                  args.n_queries)
        t_aa = _timed(lambda: runner(x, y, 0))
        t_grad = t_pgd / 20
        full = FULL_GRAD_STEPS * t_grad + FULL_QUERIES * t_fwd
        n = args.images
        print(f"| {arch} | {args.size} | {n} | {n / t_pgd:.2f} | {n / t_aa:.3f} | {t_aa / t_pgd:.1f}x | "
              f"{full / n:.0f} | {full / t_pgd:.0f}x |", flush=True)


def gap(args) -> None:
    py = [sys.executable, "-m", "rdet"]
    small = ["DATA.TRAIN_SIZE", "16", "DATA.TEST_RESIZE", "16", "DATA.NUM_WORKERS", "2"]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.work or tmp)
        model = work / "pretrain" / "model_final.pth"
        if not model.exists():
            subprocess.run(py + ["pretrain", "--dataset", "digits", "--arch", "resnet18", "--norm", "linf", "--eps",
                                 str(args.train_eps), "--output-dir", str(work / "pretrain"), *small,
                                 "SOLVER.EPOCHS", str(args.epochs), "SOLVER.LR_STEP_EPOCHS", str(args.epochs - 1),
                                 "SOLVER.BASE_LR", "0.05", "SOLVER.BATCH_SIZE", "64"], check=True)
        t = time.perf_counter()
        subprocess.run(py + ["evaluate", "--weights", str(model), "--dataset", "digits", "--attack", "pgd", "autoattack",
                             "--norm", "linf", "--eps", *map(str, args.eps), "--steps", "20",
                             "--output-dir", str(work / "evaluate"), *small, "DATA.MAX_TEST", str(args.images),
                             "SOLVER.BATCH_SIZE", "32", "ATTACK.AA_N_ITER", str(args.n_iter),
                             "ATTACK.AA_N_QUERIES", str(args.n_queries)], check=True)
        rec = json.loads((work / "evaluate" / "result.json").read_text())
        print(f"\nevaluate: {time.perf_counter() - t:.0f} s; clean {rec['clean_top1']:.2f}% on {rec['n_images']} images")
        for a in rec["attacks"]:
            name = "PGD-20" if a["attack"] == "pgd" else f"AutoAttack {a['version']} ({a['n_iter']} it, {a['n_queries']} q)"
            print(f"{name:<40} eps {a['eps']:g}: {a['robust_top1']:.2f}% ({a['n_robust']} images)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("what", choices=("speed", "gap"))
    p.add_argument("--archs", nargs="+", default=["resnet18", "resnet50"])
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--images", type=int, default=None, help="speed: 2; gap: 64")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--n-iter", type=int, default=None, help="speed: 2; gap: 20")
    p.add_argument("--n-queries", type=int, default=None, help="speed: 20; gap: 500")
    p.add_argument("--train-eps", type=float, default=0.1)
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--eps", type=float, nargs="+", default=[0.05])
    p.add_argument("--work", help="gap: keep the model and records here (reused when present)")
    args = p.parse_args()
    sp = args.what == "speed"
    args.images = args.images or (2 if sp else 64)
    args.n_iter = args.n_iter or (2 if sp else 20)
    args.n_queries = args.n_queries or (20 if sp else 500)
    (speed if sp else gap)(args)


if __name__ == "__main__":
    main()
