"""Full-network transfer training step, img/s, with and without bf16 autocast + channels_last
(same code, same process): ResNet-50, batch 16, 224 px.

    python benchmarks/bench_full_network.py [--arch resnet50] [--batch 16] [--size 224]
"""
import argparse

import torch

from bench_adv_train import positive_int, step_seconds  # the same timed EpochTrainer pass

from rdet.backbones import create_classifier
from rdet.engine import Runtime
from rdet.engine.steps import StandardStep


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--arch", default="resnet50")
    p.add_argument("--batch", type=positive_int, default=16)
    p.add_argument("--size", type=positive_int, default=224)
    p.add_argument("--reps", type=positive_int, default=3)
    args = p.parse_args()
    x = torch.rand(args.batch, 3, args.size, args.size)
    y = torch.randint(0, 10, (args.batch,))
    times = {}
    for name, rt in (("fp32 NCHW", Runtime(torch.device("cpu"))),
                     ("bf16 + channels_last", Runtime(torch.device("cpu"), torch.bfloat16, True))):
        torch.manual_seed(0)
        model = rt.prepare(create_classifier(args.arch, 10)).train()
        times[name] = step_seconds(rt, model, x, y, StandardStep(), args.reps)
    base = times["fp32 NCHW"]
    print(f"full-network step, {args.arch}, batch {args.batch}, {args.size}px, {torch.get_num_threads()} threads")
    for name, t in times.items():
        print(f"  {name:<22} {args.batch / t:7.2f} img/s  ({base / t:.2f}x fp32)")


if __name__ == "__main__":
    main()
