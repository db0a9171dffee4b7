"""Conversion time of a ResNet-50 in the robustness library's layout into detectron2's .pkl.

Prints absolute seconds and ratios against a baseline measured in the same process: reading and
re-saving the same checkpoint with torch (the unavoidable I/O of any conversion).

    python benchmarks/bench_convert.py [--reps 3]
"""
import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rdet.backbones import get_spec  # noqa: E402
from rdet.backbones.robustness_format import save_robustness_checkpoint  # noqa: E402
from rdet.convert import convert_to_detectron2  # noqa: E402

from bench_adv_train import positive_int  # noqa: E402


def best_of(fn, n=3):
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reps", type=positive_int, default=3, help="best of this many runs of each")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        src = d / "resnet50_l2_eps3.ckpt"
        save_robustness_checkpoint(get_spec("resnet50").builder(1000).state_dict(), "resnet50", src)
        base = best_of(lambda: torch.save(torch.load(src, weights_only=True), d / "copy.pth"), args.reps)
        plain = best_of(lambda: convert_to_detectron2(src, d / "r50.pkl", verify=False), args.reps)
        verified = best_of(lambda: convert_to_detectron2(src, d / "r50v.pkl", verify=True), args.reps)
    print(f"baseline torch.load+save of the checkpoint: {base:.2f} s")
    print(f"convert R50 -> .pkl, no verification:      {plain:.2f} s  ({plain / base:.1f}x baseline)")
    print(f"convert R50 -> .pkl, verified:             {verified:.2f} s  ({verified / base:.1f}x baseline)")


if __name__ == "__main__":
    main()
