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
from typing import Optional, Sequence

from rdet.core.safe_pickle import ALLOW_PICKLE_FLAG
from rdet.cli import ArgumentParser, entry_point, parse_with_overrides


def build_parser() -> argparse.ArgumentParser:
    """detectron2's ``default_argument_parser`` flags (same names and meaning), parsed by rdet's
    parser so that ``KEY VALUE`` overrides may stand anywhere, as in every rdet command, and so
    that a bad flag or ``--help`` answers before torch and detectron2 are imported.

    One default differs: ``--dist-url`` is ``auto``, a port the system reports free when the run
    starts. detectron2's is one fixed port per user id (49152 for root), so two of a user's
    multi-process runs on one machine collide ("address already in use"), and the port lies in
    Linux's range for outgoing connections, where any other program may hold it. ``auto`` is for
    one machine; several machines name machine 0's address and a port (refused otherwise)."""
    p = ArgumentParser(prog="python -m rdet train-det", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config-file", default="", metavar="FILE", help="path to config file")
    p.add_argument("--resume", action="store_true", help="resume from OUTPUT_DIR's last checkpoint")
    p.add_argument("--eval-only", action="store_true", help="perform evaluation only")
    p.add_argument("--num-gpus", type=int, default=1, help="processes per machine (one per GPU; CPU: gloo)")
    p.add_argument("--num-machines", type=int, default=1, help="total number of machines")
    p.add_argument("--machine-rank", type=int, default=0, help="the rank of this machine (unique per machine)")
    p.add_argument("--dist-url", default="auto",
                   help="initialization URL for pytorch distributed backend (default auto: a free port on "
                        "this machine; several machines: tcp://<machine rank 0's address>:<port>)")
    p.add_argument(ALLOW_PICKLE_FLAG, action="store_true",
                   help="let a .pkl MODEL.WEIGHTS run code while it is read (trusted files only)")
    return p


def _main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_with_overrides(build_parser(), argv)
    from rdet.detection import run

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
