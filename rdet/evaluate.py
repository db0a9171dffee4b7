"""Clean and PGD accuracy of any checkpoint the backbone registry loads.

    python -m rdet.evaluate --weights resnet50_l2_eps3 --data /data/imagenet --norm l2 --eps 0.25 0.5 1 3
    python -m rdet.evaluate --weights output/pretrain_demo/model_final.pth --dataset fashion_mnist \
        --config-file configs/pretrain_demo.yaml --norm linf --eps 0.01 0.03

The attack (``rdet.attacks.pgd``) starts at a random point of the ball, takes ATTACK.STEPS steps
of 2.5 * eps / STEPS and keeps, per image, the most successful of ATTACK.RESTARTS restarts. The
model is in eval mode. Writes ``robustness.json`` (atomically) to OUTPUT_DIR.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any, Dict, Optional, Sequence

from rdet.atomic import save_json
from rdet.attacks import NORMS, make_perturb
from rdet.backbones import create_classifier
from rdet.backbones.checkpoint import load_checkpoint, resolve
from rdet.cli import run_cli
from rdet.config import get_evaluate_cfg, merge_config
from rdet.engine import build_loader, evaluate, setup_runtime
from rdet.engine.datasets import datasets_from_cfg
from rdet.errors import ConfigError


def run(cfg) -> Dict[str, Any]:
    if cfg.ATTACK.NORM not in NORMS:
        raise ConfigError(f"ATTACK.NORM must be one of {', '.join(NORMS)}")
    if not cfg.MODEL.WEIGHTS:
        raise ConfigError("no weights to evaluate: pass --weights (catalog name or checkpoint file)")
    start = time.time()
    rt = setup_runtime(cfg)
    loaded = load_checkpoint(resolve(cfg.MODEL.WEIGHTS), allow_pickle=cfg.MODEL.ALLOW_PICKLE)
    cfg.MODEL.ARCH = loaded.arch
    _, test, num_classes, note = datasets_from_cfg(cfg)
    model = rt.prepare(create_classifier(loaded.arch, num_classes, weights=cfg.MODEL.WEIGHTS,
                                         allow_pickle=cfg.MODEL.ALLOW_PICKLE))
    if not loaded.meta.get("head_loaded", True) and model.num_classes != num_classes:
        raise ConfigError("classifier head does not match the dataset's classes")
    loader = build_loader(test, cfg, rt, train=False)
    rows = [{"eps": 0.0, **evaluate(model, loader, rt, num_classes, desc="clean")}]
    for eps in cfg.ATTACK.EPS:
        step = cfg.ATTACK.STEP_SIZE_FACTOR * eps if cfg.ATTACK.STEP_SIZE_FACTOR > 0 else None
        attack = make_perturb(float(eps), cfg.ATTACK.NORM, cfg.ATTACK.STEPS, step, rand_init=True,
                              restarts=cfg.ATTACK.RESTARTS, autocast=rt.autocast)
        rows.append({"eps": float(eps), **evaluate(model, loader, rt, num_classes, perturb=attack,
                                                     desc=f"PGD eps={eps:g}")})
    result = {"weights": cfg.MODEL.WEIGHTS, "arch": loaded.arch, "trained_norm": loaded.meta.get("norm"),
              "trained_eps": loaded.meta.get("eps"), "attack": {"norm": cfg.ATTACK.NORM, "steps": cfg.ATTACK.STEPS,
                                                               "restarts": cfg.ATTACK.RESTARTS},
              "dataset": cfg.DATA.DATASET, "data_note": note, "results": rows, "wall_time_s": time.time() - start}
    if rt.is_main:
        out = Path(cfg.OUTPUT_DIR)
        out.mkdir(parents=True, exist_ok=True)
        save_json(result, out / "robustness.json")
    return result


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m rdet.evaluate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", required=True, help="catalog name or checkpoint file")
    p.add_argument("--config-file", help="YAML for DATA.* (e.g. the pretraining config of the model)")
    p.add_argument("--data", help="ImageNet-layout folder (val/<wnid>/*)")
    p.add_argument("--dataset", help="dataset name (default imagenet)")
    p.add_argument("--norm", choices=NORMS)
    p.add_argument("--eps", type=float, nargs="+", help="radii for [0,1] images")
    p.add_argument("--steps", type=int)
    p.add_argument("--restarts", type=int)
    p.add_argument("--output-dir", default="output/evaluate")
    p.add_argument("--allow-pickle", action="store_true")
    p.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE overrides")
    args = p.parse_args(argv)
    cfg = merge_config(get_evaluate_cfg(), args.config_file, args.opts)
    for key, val in (("DATA.ROOT", args.data), ("DATA.DATASET", args.dataset), ("ATTACK.NORM", args.norm),
                     ("ATTACK.EPS", args.eps), ("ATTACK.STEPS", args.steps), ("ATTACK.RESTARTS", args.restarts),
                     ("OUTPUT_DIR", args.output_dir), ("MODEL.WEIGHTS", args.weights)):
        if val is not None:
            merge_config(cfg, None, [key, str(val)])
    cfg.MODEL.ALLOW_PICKLE = args.allow_pickle
    res = run(cfg)
    print(f"{res['arch']} ({res['weights']}) on {res['data_note']}; PGD-{res['attack']['steps']} "
          f"{res['attack']['norm']}, {res['attack']['restarts']} restart(s)")
    print(f"{'eps':>8}  {'top1':>7}  {'mean/class':>10}")
    for r in res["results"]:
        print(f"{r['eps']:>8g}  {r['top1']:>7.2f}  {r['mean_per_class']:>10.2f}")
    print(f"written: {Path(cfg.OUTPUT_DIR) / 'robustness.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
