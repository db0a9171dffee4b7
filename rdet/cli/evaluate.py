"""``rdet-evaluate`` / ``python -m rdet evaluate``: clean and robust accuracy of any checkpoint
the backbone registry loads (:mod:`rdet.tasks.robustness`).

    python -m rdet evaluate --weights resnet50_l2_eps3 --data-root /data/imagenet --norm l2 --eps 0.25 0.5 1 3
    python -m rdet evaluate --weights resnet50_linf_eps4 --data-root /data/imagenet --subset robustbench \
        --attack pgd autoattack --norm linf --eps 0.0156863
    python -m rdet evaluate --weights output/pretrain_demo/model_final.pth --dataset fashion_mnist \
        --config-file configs/pretrain_demo.yaml --norm linf --eps 0.01 0.03
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Optional, Sequence

from rdet.cli import ArgumentParser, add_data_root, choices, entry_point, is_main_process, module_doc, parse_with_overrides
from rdet.config import CfgNode, build_config, get_evaluate_cfg


def build_cfg(argv: Optional[Sequence[str]] = None) -> CfgNode:
    p = ArgumentParser(prog="python -m rdet evaluate", description=module_doc("rdet.tasks.robustness"),
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", required=True, help="catalog name or checkpoint file")
    p.add_argument("--config-file", help="evaluation config, or the model's training config (its DATA.* is used)")
    add_data_root(p, "dataset root (ImageNet layout: val/<wnid>/*)")
    p.add_argument("--dataset", help="dataset name (default imagenet)")
    p.add_argument("--norm", choices=choices("ATTACK.NORM"))
    p.add_argument("--eps", type=float, nargs="+", help="radii for [0,1] images")
    p.add_argument("--steps", type=int)
    p.add_argument("--restarts", type=int, help="PGD restarts")
    p.add_argument("--attack", nargs="+", choices=choices("ATTACK.TYPES"), help="attacks to run at every eps (ATTACK.TYPES; "
                   "default pgd)")
    p.add_argument("--aa-version", choices=choices("ATTACK.AA_VERSION"), help="AutoAttack version (ATTACK.AA_VERSION; default standard)")
    p.add_argument("--subset", choices=choices("EVAL.SUBSET"), help="robustbench: RobustBench's 5000 ImageNet validation images "
                   "(EVAL.SUBSET; --dataset imagenet)")
    p.add_argument("--seed", type=int, help="seed of the attacks' random starts (SEED; default 0)")
    p.add_argument("--output-dir", help="where result.json and per_image.csv go (default output/evaluate)")
    p.add_argument("--fit-head", action="store_true",
                   help="when the checkpoint's head is not for this dataset, fit a linear head first (EVAL.FIT_HEAD)")
    p.add_argument("--allow-pickle", action="store_true", help="full unpickling of --weights (trusted files only)")
    args = parse_with_overrides(p, argv)
    from rdet.tasks.robustness import merge_config_file

    cfg = get_evaluate_cfg()
    if args.config_file:
        merge_config_file(cfg, args.config_file)
    return build_config(cfg, None, {
        "DATA.ROOT": args.data_root, "DATA.DATASET": args.dataset, "ATTACK.NORM": args.norm, "ATTACK.EPS": args.eps,
        "ATTACK.STEPS": args.steps, "ATTACK.RESTARTS": args.restarts, "OUTPUT_DIR": args.output_dir,
        "ATTACK.TYPES": args.attack, "ATTACK.AA_VERSION": args.aa_version, "EVAL.SUBSET": args.subset,
        "SEED": args.seed,
        "MODEL.WEIGHTS": args.weights, "EVAL.FIT_HEAD": True if args.fit_head else None,
        "MODEL.ALLOW_PICKLE": True if args.allow_pickle else None}, args.opts)


def _main(argv: Optional[Sequence[str]] = None) -> int:
    cfg = build_cfg(argv)
    from rdet.tasks.robustness import PER_IMAGE_NAME, RESULT_NAME, run

    res = run(cfg)
    if not is_main_process():
        return 0
    b = res["backbone"]
    trained = ("standard" if b["method"] == "standard" else
               f"{b['method'] or 'unknown method'}, {b['norm'] or 'unknown norm'} eps={_or_unknown(b['eps'])}")
    print(f"{res['arch']} ({res['weights']}; trained: {trained}) on {res['data_note']}")
    if res["head"]["source"] != "checkpoint":
        h = res["head"]
        print(f"head: FITTED here ({h['reason']}): linear head on {h['train_images']} training images x "
              f"{h['views']} view(s), {h['epochs']} epochs, frozen body")
    print(f"{res['n_images']} images, clean top-1 {res['clean_top1']:.2f}%"
          + (f" (resumed after {res['resumed_batches']} batches)" if res["resumed_batches"] else ""))
    print(f"{'attack':<44}  {'eps':>9}  {'robust top1':>11}  {'mean/class':>10}")
    for a in res["attacks"]:
        print(f"{_attack_name(a):<44}  {a['eps']:>9g}  {a['robust_top1']:>11.2f}  {a['robust_mean_per_class']:>10.2f}")
    print(f"written: {Path(cfg.OUTPUT_DIR) / RESULT_NAME}, {Path(cfg.OUTPUT_DIR) / PER_IMAGE_NAME}")
    return 0


def _attack_name(a) -> str:
    if a["attack"] == "pgd":
        return f"PGD-{a['steps']} {a['norm']}, {a['restarts']} restart(s)"
    budget = "" if a["standard_budget"] else f", reduced: {a['n_iter']} it"
    return f"AutoAttack {a['version']} {a['norm']} (fp32{budget})"


def _or_unknown(v) -> str:
    return "unknown" if v is None else f"{v:g}"


main = entry_point(_main)


if __name__ == "__main__":
    raise SystemExit(main())
