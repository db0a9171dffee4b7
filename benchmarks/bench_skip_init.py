"""Building a classifier to load a checkpoint into, with and without drawing its parameters first
(rdet.backbones.skip_init).

For each arch: a checkpoint of random weights in a temporary folder, then, alternated in this
process, ``create_classifier(arch, weights=file)`` (skips the draws) against building the
classifier as before (every parameter drawn) and loading the same file. Prints the best of each
and their ratio. Then the cost of telling a file's architecture from its tensors
(``sniff_arch``, cold cache): the family's networks built on the meta device without and with
their initialisers. No data.

    python benchmarks/bench_skip_init.py [--reps 3] [--archs resnet50 convnext_tiny]
"""
import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_adv_train import positive_int  # noqa: E402

from rdet.backbones import Classifier, create_classifier, get_spec, list_backbones, load_weights  # noqa: E402
from rdet.backbones.checkpoint import classifier_checkpoint  # noqa: E402
from rdet.backbones.skip_init import skip_parameter_init  # noqa: E402
from rdet.core.atomic import torch_save  # noqa: E402


def _timed(fn):
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def _drawn_then_loaded(arch, path):
    model = Classifier(get_spec(arch), 1000)
    load_weights(model, str(path))
    return model


def _family_signatures(archs, skip):
    for arch in archs:
        with torch.device("meta"), (skip_parameter_init() if skip else torch.no_grad()):
            get_spec(arch).builder(1000)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reps", type=positive_int, default=3, help="best of this many builds of each, alternated")
    p.add_argument("--archs", nargs="+", default=["resnet18", "resnet50", "convnext_tiny", "vit_base"],
                   choices=list_backbones(), metavar="ARCH", help="registry archs to load")
    args = p.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        for arch in args.archs:
            path = Path(tmp) / f"{arch}.pth"
            torch_save(classifier_checkpoint(Classifier(get_spec(arch), 1000), {"arch": arch}), path)
            best = {"skip": float("inf"), "drawn": float("inf")}
            for _ in range(args.reps):
                best["skip"] = min(best["skip"], _timed(lambda: create_classifier(arch, 1000, weights=str(path))))
                best["drawn"] = min(best["drawn"], _timed(lambda: _drawn_then_loaded(arch, path)))
            print(f"load {arch}: {best['skip']:.3f} s without the draws, {best['drawn']:.3f} s drawn then "
                  f"overwritten: {best['drawn'] / best['skip']:.2f}x")
    for family in ("convnext", "vit", None):
        archs = list_backbones(family) if family else [a for a in list_backbones() if get_spec(a).timm_name is None]
        plain = min(_timed(lambda: _family_signatures(archs, False)) for _ in range(args.reps))
        skipped = min(_timed(lambda: _family_signatures(archs, True)) for _ in range(args.reps))
        print(f"shapes of the {family or 'torchvision'} family ({len(archs)} networks on the meta device): "
              f"{skipped:.2f} s without the initialisers, {plain:.2f} s with: {plain / skipped:.2f}x")


if __name__ == "__main__":
    main()
