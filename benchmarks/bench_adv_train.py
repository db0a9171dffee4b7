"""PGD-3 adversarial training step of ResNet-50 (batch 16, 224 px) on this machine.

Same code (rdet's one training loop, ``EpochTrainer``, with the PGD step that pretraining uses),
two settings in one process: fp32 NCHW (baseline) and the fast path (bf16 autocast + channels_last). Prints img/s,
the fast/baseline ratio, and the adversarial/standard step-time ratio (PGD-3 costs at least four
forward-backward passes). Then checks that speed does not buy a weaker attack: PGD accuracy of a
small trained model under the fp32 and the bf16 attack.

    python benchmarks/bench_adv_train.py [--batch 16] [--size 224] [--reps 2]
"""
import argparse
import time

import torch

from rdet.attacks import make_perturb
from rdet.backbones import create_classifier
from rdet.engine import EpochTrainer, Runtime
from rdet.engine.steps import AttackStep, StandardStep


def positive_int(text: str) -> int:
    """argparse type: a whole number >= 1 (a count of reps, a batch, a size), else a one-line usage error."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text}: must be at least 1")
    return value


def step_seconds(rt, model, x, y, step, reps: int) -> float:
    """Best of ``reps`` timed passes of ``EpochTrainer`` over one batch (after one warm-up)."""
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    sched = torch.optim.lr_scheduler.StepLR(opt, 1000)
    times = []
    for _ in range(reps + 1):
        trainer = EpochTrainer(model, [(x, y)], opt, sched, rt, step, 1, scaler=rt.grad_scaler())
        t = time.perf_counter()
        trainer.train()
        times.append(time.perf_counter() - t)
    return min(times[1:])


def step_time(rt, x, y, eps, steps, reps):
    model = rt.prepare(create_classifier("resnet50", 1000))
    step = AttackStep(make_perturb(eps, "l2", steps, 2 * eps / 3, autocast=rt.autocast)) if eps > 0 else StandardStep()
    return step_seconds(rt, model, x, y, step, reps)


def robust_accuracy_check():
    """PGD accuracy of a quickly trained digits ResNet-18 under fp32 and bf16 attacks."""
    import tempfile

    from rdet.tasks import pretrain
    from rdet.config import get_pretrain_cfg
    from rdet.engine import build_loader, evaluate, setup_runtime
    from rdet.data.build import datasets_from_cfg

    cfg = get_pretrain_cfg()
    cfg.merge_from_list(["DATA.DATASET", "digits", "DATA.TRAIN_SIZE", "16", "DATA.TEST_RESIZE", "16",
                         "DATA.NUM_WORKERS", "0", "SOLVER.BATCH_SIZE", "64", "SOLVER.BASE_LR", "0.05",
                         "SOLVER.EPOCHS", "6", "SOLVER.LR_STEP_EPOCHS", "5", "ADV.NORM", "linf", "ADV.EPS", "0.05",
                         "OUTPUT_DIR", tempfile.mkdtemp()])
    pretrain.run(cfg)
    model = create_classifier("resnet18", 10, weights=f"{cfg.OUTPUT_DIR}/model_final.pth")
    out = {}
    for name, amp, cl in (("fp32 NCHW", "off", False), ("bf16 channels_last", "bf16", True)):
        cfg.RUNTIME.AMP, cfg.RUNTIME.CHANNELS_LAST = amp, cl
        rt = setup_runtime(cfg)
        _, test, n, _ = datasets_from_cfg(cfg)
        m = rt.prepare(model)
        torch.manual_seed(0)
        out[name] = evaluate(m, build_loader(test, cfg, rt, train=False), rt, n,
                             perturb=make_perturb(0.05, "linf", 10, rand_init=True, autocast=rt.autocast))["top1"]
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--batch", type=positive_int, default=16)
    p.add_argument("--size", type=positive_int, default=224)
    p.add_argument("--reps", type=positive_int, default=2)
    args = p.parse_args()
    torch.manual_seed(0)
    x = torch.rand(args.batch, 3, args.size, args.size)
    y = torch.randint(0, 1000, (args.batch,))
    cpu = torch.device("cpu")
    base, fast = Runtime(cpu), Runtime(cpu, torch.bfloat16, channels_last=True)
    t_adv_base = step_time(base, x, y, 3.0, 3, args.reps)
    t_adv_fast = step_time(fast, x, y, 3.0, 3, args.reps)
    t_std_fast = step_time(fast, x, y, 0.0, 3, args.reps)
    ips = lambda t: args.batch / t  # noqa: E731
    print(f"ResNet-50, batch {args.batch}, {args.size}px, PGD-3 L2 adversarial training step, {torch.get_num_threads()} threads")
    print(f"  fp32 NCHW (baseline):      {t_adv_base:6.2f} s/step  {ips(t_adv_base):6.2f} img/s")
    print(f"  bf16 + channels_last:      {t_adv_fast:6.2f} s/step  {ips(t_adv_fast):6.2f} img/s")
    print(f"  speed-up fast/baseline:    {t_adv_base / t_adv_fast:.2f}x  (target >= 3x)")
    print(f"  standard step (fast path): {t_std_fast:6.2f} s/step; adversarial/standard = {t_adv_fast / t_std_fast:.2f} "
          f"(target <= 4.2)")
    acc = robust_accuracy_check()
    print("  PGD-10 Linf 0.05 accuracy of an adversarially trained digits ResNet-18 under each attack path: "
          + ", ".join(f"{k}: {v:.1f}%" for k, v in acc.items()))


if __name__ == "__main__":
    main()
