"""rdet-convert (or python tools/convert_backbone.py): convert a torchvision, robustness-library
or rdet ResNet checkpoint, or a timm / RobustBench ConvNeXt, Swin or ViT, into a Detectron2 backbone.

    rdet-convert resnet50_l2_eps3.ckpt r50_l2_eps3.pkl

writes r50_l2_eps3.pkl (detectron2 format) and r50_l2_eps3.yaml (the detectron2 settings
that make it compute what torchvision computes), then checks the two networks agree.
"""
from __future__ import annotations

import argparse
from typing import Optional, Sequence

from rdet.cli import ArgumentParser, choices, entry_point


def _main(argv: Optional[Sequence[str]] = None) -> int:
    p = ArgumentParser(prog="python -m rdet convert", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("input", help="checkpoint file (robustness, torchvision, rdet) or catalog name")
    p.add_argument("output", help="output weights: .pkl (detectron2 format) or .pth")
    p.add_argument("--arch", help="expected architecture (default: sniffed from the weights)")
    p.add_argument("--no-verify", action="store_true", help="skip the detectron2-vs-torchvision check")
    p.add_argument("--allow-pickle", action="store_true",
                   help="read checkpoints with full unpickling (can execute code: trusted files only)")
    p.add_argument("--input-norm", choices=choices("MODEL.INPUT_NORM"),
                   help="the input normalisation the weights were trained with, for a file that holds none and "
                        "is not named by its catalog name (raw: Singh et al.'s ConvStem models)")
    p.add_argument("--weights-variant", choices=choices("MODEL.WEIGHTS_VARIANT"),
                   help="plain or EMA weights of a file that holds both (Singh et al.'s full_model_*.pth)")
    args = p.parse_args(argv)
    from rdet.convert import MAX_REL_ERROR, convert_to_detectron2

    res = convert_to_detectron2(args.input, args.output, arch=args.arch, verify=not args.no_verify,
                                allow_pickle=args.allow_pickle, input_norm=args.input_norm or "",
                                variant=args.weights_variant or "")
    m = res.meta
    print(f"converted {m['arch']} (norm={m['norm']}, eps={m['eps']}) -> {res.weights}")
    if m.get("input_norm"):
        print(f"input normalisation: {m['input_norm']['name']} (from {m['input_norm']['source']}), written as "
              f"MODEL.PIXEL_MEAN / PIXEL_STD")
    print(f"detectron2 config: {res.config}")
    if res.max_rel_error is not None:
        what = {"hierarchical": "res2..res5 match timm's stages under fresh output norms (Swin: timm built for 448 px)",
                "vit": "last_feat (ViTDet windows, 224 px) matches timm's last block on the grid tokens"}.get(
                    m.get("family"), "res2..res5 match torchvision layer1..layer4")
        print(f"verified: {what}, max relative error {res.max_rel_error:.2e} (limit {MAX_REL_ERROR:g})")
    return 0


main = entry_point(_main)


if __name__ == "__main__":
    raise SystemExit(main())
