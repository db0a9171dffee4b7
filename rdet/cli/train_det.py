"""rdet-train-det (or python tools/train_det.py): train / evaluate Faster or Mask R-CNN, or a
semantic segmenter (a config whose MODEL.META_ARCHITECTURE is SemanticSegmentor: Semantic FPN,
UperNet, DeepLabV3+), with a converted rdet backbone, detectron2's own flags and KEY VALUE overrides.

    rdet-convert resnet50_l2_eps3 weights/r50_l2_eps3.pkl
    rdet-train-det --config-file configs/coco_r50_fpn_1x.yaml \\
        MODEL.WEIGHTS weights/r50_l2_eps3.pkl OUTPUT_DIR output/coco_1x_eps3
    rdet-train-det --config-file ... --eval-only MODEL.WEIGHTS output/coco_1x_eps3/model_final.pth

Several machines: run the same command on each with --num-machines N --machine-rank 0..N-1
--dist-url tcp://<machine rank 0's address>:<port> (and --num-gpus per machine).
"""
from __future__ import annotations

import argparse
import warnings
from typing import Optional, Sequence

from rdet.backbones.checkpoint import ALLOW_PICKLE_FLAG
from rdet.cli import ArgumentParser, entry_point

# fvcore (imported with detectron2) calls torch.jit.script at import time, which torch deprecates: a
# note for fvcore's developers that would otherwise open every run's output, refusals included.
warnings.filterwarnings("ignore", message=r"`torch.jit.script` is deprecated", category=FutureWarning)


def build_parser() -> argparse.ArgumentParser:
    from detectron2.engine import default_argument_parser

    p = default_argument_parser(epilog=__doc__)
    p.prog = "python -m rdet train-det"
    p.error = ArgumentParser.error.__get__(p)  # detectron2's own flags, with rdet's one-line errors
    p.add_argument(ALLOW_PICKLE_FLAG, action="store_true",
                   help="let a .pkl MODEL.WEIGHTS run code while it is read (trusted files only)")
    return p


def _main(argv: Optional[Sequence[str]] = None) -> int:
    from rdet.detection import run

    args = build_parser().parse_args(argv)
    rec = run(args.config_file, args.opts, resume=args.resume, eval_only=args.eval_only, num_gpus=args.num_gpus,
              num_machines=args.num_machines, machine_rank=args.machine_rank, dist_url=args.dist_url,
              allow_pickle=args.allow_pickle)
    if rec is None:
        print(f"machine rank {args.machine_rank} done; machine rank 0 writes the results")
        return 0
    ap = lambda v: "n/a" if v is None else f"{v:.2f}"  # noqa: E731
    if rec.get("task") == "segmentation":
        print(f"mIoU {ap(rec['mIoU'])} (fwIoU {ap(rec['fwIoU'])}, pixel accuracy {ap(rec['pixel_accuracy'])}); "
              f"data: {rec['data_note']}")
        return 0
    print(f"box AP {ap(rec['box_AP'])} (AP50 {ap(rec['box_AP50'])}, AP75 {ap(rec['box_AP75'])})"
          + (f", mask AP {ap(rec['mask_AP'])}" if rec.get("mask_AP") is not None else "")
          + f"; data: {rec['data_note']}")
    return 0


main = entry_point(_main)


if __name__ == "__main__":
    raise SystemExit(main())
