#!/usr/bin/env python
"""Train / evaluate Faster or Mask R-CNN with a converted rdet backbone (detectron2 conventions).

    python tools/convert_backbone.py resnet50_l2_eps3 weights/r50_l2_eps3.pkl
    python tools/train_det.py --config-file configs/coco_r50_fpn_1x.yaml \
        MODEL.WEIGHTS weights/r50_l2_eps3.pkl OUTPUT_DIR output/coco_1x_eps3
    python tools/train_det.py --config-file ... --eval-only MODEL.WEIGHTS output/.../model_final.pth
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without install

from rdet.cli import run_cli  # noqa: E402


def main(argv=None):
    from detectron2.engine import default_argument_parser

    from rdet.detection import run

    args = default_argument_parser(epilog=__doc__).parse_args(argv)
    rec = run(args.config_file, args.opts, resume=args.resume, eval_only=args.eval_only, num_gpus=args.num_gpus,
              num_machines=args.num_machines, machine_rank=args.machine_rank, dist_url=args.dist_url)
    ap = lambda v: "n/a" if v is None else f"{v:.2f}"  # noqa: E731
    print(f"box AP {ap(rec['box_AP'])} (AP50 {ap(rec['box_AP50'])}, AP75 {ap(rec['box_AP75'])})"
          + (f", mask AP {ap(rec['mask_AP'])}" if rec.get("mask_AP") is not None else "")
          + f"; data: {rec['data_note']}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
