"""``python -m rdet select``: which robust backbone for my dataset?

    python -m rdet select                                  # offline demo (see below)
    python -m rdet select --dataset cifar10 --data-root /data --models 'resnet50_l2_*' \\
        --output-dir output/select_c10 [--top-k 3 --full-network] [--executor slurm --slurm partition=gpu]

Ranks models (catalog names, fnmatch patterns over the catalog such as ``resnet50_l2_*``, or
checkpoint files; none: the whole catalog, narrowed by ``--archs``/``--norm``) by fixed-feature
transfer accuracy on a validation split held out from the training data, never on the test set.
Each model's features are extracted once and cached; linear heads over the lr grid (and, unless
SELECT.LOGREG_L2 is [], L-BFGS logistic regression over an L2 sweep) are trained on the cache.
The work is an ordinary study (``OUTPUT_DIR/study.yaml``, one cell per model) run by
``rdet.study``'s runner: ``--executor slurm`` fans the models out over a cluster, and rerunning the
same command resumes an interrupted selection. ``--full-network`` then fine-tunes the top-k models
with the paper's protocol (ordinary ``rdet.classify`` cells, lr chosen on the same validation split).

``--estimator logme knn ...`` scores every model with transferability estimators (LogME, LEEP,
N-LEEP, NCE, H-score, SFDA, a leave-one-out k-NN probe; ``linear``: the validation ranking itself)
from the features the selection cached: one column each beside the validation ranking, with
their seconds and their agreement with it. They are not part of the cells' settings, so a finished
selection is re-scored with other estimators in seconds, from its cache.

Without arguments (offline demo): the catalog's weights cannot be downloaded here, so the demo
ranks ResNet-18s that rdet.pretrain trains on Fashion-MNIST classes 0-4 at L2 eps 0, 0.25 and 1
for transfer to Fashion-MNIST classes 5-9.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import yaml

from rdet.core.atomic import atomic_path
from rdet.cli import ArgumentParser, add_data_root, choices, entry_point, parse_with_overrides
from rdet.config import CONFIG_DIR, build_config
from rdet.core.errors import ConfigError
from rdet.core.records import read_record
from rdet.config import get_select_cfg

DEMO_CONFIG = CONFIG_DIR / "select_demo.yaml"
DEMO_DIR = Path("output/select_demo")
# The demo's source models: rdet.pretrain on Fashion-MNIST classes 0-4, one short run per eps.
DEMO_PRETRAIN = {"config": str(CONFIG_DIR / "pretrain_demo.yaml"),
                 "opts": ["SOLVER.EPOCHS", 2, "SOLVER.LR_STEP_EPOCHS", 1, "DATA.MAX_TRAIN", 2000, "DATA.MAX_TEST", 500,
                          "ADV.EVAL_STEPS", 5],
                 "runs": [{"name": "eps0", "eps": 0}, {"name": "l2_eps0.25", "eps": 0.25, "norm": "l2"},
                          {"name": "l2_eps1", "eps": 1.0, "norm": "l2"}]}
DEMO_DESCRIPTION = ("rdet.select offline demo. Source models: ResNet-18s trained by rdet.pretrain on Fashion-MNIST "
                    "classes 0-4 (T-shirt, Trouser, Pullover, Dress, Coat; 2000 images at 32 px, 2 epochs) at L2 "
                    "eps 0, 0.25 and 1. Target: Fashion-MNIST classes 5-9 (Sandal, Shirt, Sneaker, Bag, Ankle boot). "
                    "Real data from Debian's dataset-fashion-mnist, no download; miniature, so the numbers show the "
                    "selection works, not what ImageNet-scale robust backbones do.")
_IGNORED_ON_RESUME = ("executor", "slurm")
# keys read after the cells, from their cached features (rdet.select.scoring): left out of the
# cells' overrides, so changing them never makes a finished selection "another selection"
_SCORING_KEYS = ("SELECT.ESTIMATORS", "SELECT.KNN_K")


def parse(argv):
    p = ArgumentParser(prog="python -m rdet select", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", help="a dataset name of rdet.classify (cifar10, imagefolder, fashion_mnist, ...)")
    add_data_root(p, "folder holding the dataset")
    p.add_argument("--models", nargs="+", default=[], metavar="PATTERN",
                   help="catalog names, fnmatch patterns over them ('resnet50_l2_*') or checkpoint files")
    p.add_argument("--archs", nargs="+", default=[], help="keep only these architectures")
    p.add_argument("--norm", choices=("l2", "linf"), help="keep only models trained against this norm")
    p.add_argument("--top-k", type=int, default=3, help="models fine-tuned by --full-network (default 3)")
    p.add_argument("--full-network", action="store_true", help="then fine-tune the top-k with the paper's protocol")
    p.add_argument("--config-file", help="a transfer config (SOLVER.*, DATA.*, TRANSFER.LR_GRID); "
                                         "default: rdet's paper defaults (the demo: select_demo.yaml)")
    p.add_argument("--val-size", type=float, help="validation share of the training set (<1) or image count (>=1); "
                                                  "default 0.2")
    p.add_argument("--val-seed", type=int, help="seed of the validation split (default 0)")
    p.add_argument("--views", type=int, help="augmented views per training image in the feature cache (default 5)")
    p.add_argument("--estimator", nargs="+", metavar="NAME",
                   help="transferability estimators scored from the cached features beside the validation ranking: "
                        + ", ".join(choices("SELECT.ESTIMATORS")) + " (linear: the validation-split heads)")
    p.add_argument("--against-paper", choices=("fixed", "full"),
                   help="set every ranking beside the paper's Table 8 (fixed) or 9 (full) accuracies (10/11 at "
                        "DATA.DOWNSCALE 32) of the same models: Kendall tau, weighted tau, top-1 regret")
    p.add_argument("--cache-dir", help="feature cache folder (default OUTPUT_DIR/feature_cache)")
    p.add_argument("--executor", choices=("local", "submitit_local", "slurm"), default="local")
    p.add_argument("--slurm", nargs="+", default=[], metavar="KEY=VALUE",
                   help="submitit parameters, e.g. partition=gpu gpus_per_node=1 timeout_min=600")
    p.add_argument("--output-dir", help=f"where the study, its cells and the ranking go (demo: {DEMO_DIR})")
    p.add_argument("--allow-pickle", action="store_true", help="full unpickling of model files (trusted files only)")
    args = parse_with_overrides(p, argv)  # KEY VALUE overrides anywhere, as in every rdet command
    _split_estimators(p, args)
    return args


def _split_estimators(p, args) -> None:
    """``--estimator logme knn SOLVER.EPOCHS 5``: argparse gives --estimator every word up to the
    next flag; the leading estimator names are its, the rest (from the first ``KEY.NAME``) are
    overrides. A word that is neither is a misspelt estimator, refused in one line."""
    words, known = args.estimator or [], choices("SELECT.ESTIMATORS")
    n = next((i for i, w in enumerate(words) if w not in known), len(words))
    if n < len(words) and (n == 0 or "." not in words[n]):
        p.error(f"argument --estimator: invalid choice: {words[n]!r} (choose from {', '.join(known)})")
    args.estimator = words[:n] or None
    args.opts = words[n:] + list(args.opts)


def _slurm(items: Sequence[str]) -> Dict:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--slurm {item}: expected KEY=VALUE")
        out[key] = yaml.safe_load(value)
    return out


def build(args):
    """``(cfg, opts for the cells, study dict)``; every input checked before anything runs."""
    demo = not (args.dataset or args.data_root or args.models or args.config_file)
    config = str(DEMO_CONFIG) if demo else args.config_file
    from rdet.config.schema import check_cfg

    flags = {"DATA.DATASET": args.dataset, "DATA.ROOT": args.data_root, "DATA.VAL_SIZE": args.val_size,
             "DATA.VAL_SEED": args.val_seed, "SELECT.VIEWS": args.views, "SELECT.ESTIMATORS": args.estimator}
    cfg = build_config(get_select_cfg(), config, flags, list(args.opts))
    check_cfg(cfg)  # every key's rule (rdet.config.schema), as the other commands do
    pairs = [(k, v) for k, v in flags.items() if v is not None] + list(zip(args.opts[0::2], args.opts[1::2]))
    opts = [str(x) for k, v in pairs if k not in _SCORING_KEYS for x in (k, v)]
    if args.top_k < 1:
        raise ConfigError("--top-k must be at least 1")
    if args.against_paper:
        from rdet.select.against_paper import check_dataset

        check_dataset(cfg, args.against_paper)  # a dataset the paper lacks: refused before any work
    if not (args.output_dir or demo):
        raise ConfigError("--output-dir is required (where the study, the feature cache and the ranking go)")
    out = Path(args.output_dir or DEMO_DIR).resolve()
    study = {"description": DEMO_DESCRIPTION if demo else f"rdet.select: backbones for {cfg.DATA.DATASET}",
             "output_dir": str(out), "executor": args.executor, "slurm": _slurm(args.slurm),
             "select": {"config": str(Path(config).resolve()) if config else None, "dataset": cfg.DATA.DATASET,
                        "opts": opts, "cache_dir": str(Path(args.cache_dir).resolve()) if args.cache_dir else None,
                        "allow_pickle": args.allow_pickle}}
    if demo:
        study["pretrain"] = DEMO_PRETRAIN
    else:
        from rdet.select.models import resolve_models

        refs = resolve_models(args.models, args.archs, args.norm, args.allow_pickle)
        study["backbones"] = [{"name": r.name, "weights": r.weights} for r in refs]
    return cfg, study


def write_study(study: Dict) -> Path:
    """``OUTPUT_DIR/study.yaml``; an existing one with other settings is refused, so a resumed
    selection can never mix cells of two different selections."""
    out = Path(study["output_dir"])
    path = out / "study.yaml"
    if path.is_file():
        old = yaml.safe_load(path.read_text()) or {}
        changed = sorted(k for k in set(old) | set(study) if k not in _IGNORED_ON_RESUME and old.get(k) != study.get(k))
        if changed:
            raise ConfigError(f"{out} holds a selection with other settings ({', '.join(changed)} differ); "
                              f"use another --output-dir or remove it")
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tmp.write_text(yaml.safe_dump(study, sort_keys=False))
    return path


def _main(argv: Optional[Sequence[str]] = None) -> int:
    start = time.time()
    args = parse(argv)
    from rdet.data.classification import image_files_of
    from rdet.select import ranking
    from rdet.select.fixed import selection_data
    from rdet.select.full import check_holdout
    from rdet.study import run_study

    cfg, study_dict = build(args)
    data = selection_data(cfg)  # a missing dataset or an impossible split fails before any work
    if args.full_network:
        train_files = image_files_of(data["train_plain"])
        val_files = None if train_files is None else [train_files[i] for i in data["val_idx"]]
        check_holdout(cfg, study_dict, val_files, len(data["val_idx"]))
    path = write_study(study_dict)
    print(f"data: {data['note']}")
    study = run_study(path)  # prints the study's description (what the models and the data are)
    cells = [c for c in study.cells if c.kind == "select"]
    records = [read_record(c.output_dir(study.output_dir) / "result.json") for c in cells]
    rows = ranking.ranked_rows(records)
    estimators_file = _score_estimators(cfg, rows, Path(study.output_dir), args.allow_pickle)
    files = ranking.write_tables(rows, Path(study.output_dir))
    paper_file = _against_paper(cfg, rows, Path(study.output_dir), args.against_paper) if args.against_paper else None
    plot = ranking.plot(rows, Path(study.output_dir))
    s = ranking.summary(rows)
    print()
    print(ranking.console_table(rows))
    print(f"\nvalidation-selected: {s['val_model']} ({s['val_head']}): validation {s['val_val']:.2f}%, "
          f"test {s['val_test']:.2f}%")
    print(f"test-selected (the paper's way): {s['test_model']} ({s['test_head']}): test {s['test_test']:.2f}% "
          f"({s['gap']:+.2f} points, the optimism of choosing on the test set)")
    if args.full_network:
        full = _run_full_network(cfg, study_dict, rows[:args.top_k])
        print(f"\nfull-network fine-tuning of the top {len(full)} (lr chosen on validation; "
              f"{Path(study.output_dir) / 'full_network' / 'ranking.md'}):")
        for r in full:
            print(f"  {r['model']}: lr {r['lr']:g}, validation {r['val']:.2f}%, test {r['test']:.2f}% "
                  f"(best test over lrs {r['best_test']:.2f}%)")
    agree = ranking.agreement_lines(rows)
    if agree:
        print("\ntransferability estimators (scored from the cached features; tau, weighted tau and top-1 regret "
              "against the validation ranking and the test accuracy):")
        print("\n".join(agree))
    print(f"files: {', '.join(str(p) for p in [*files.values(), plot, estimators_file, paper_file] if p)}; "
          f"selection took {time.time() - start:.0f} s")
    if args.full_network:
        print(ranking.top_line(rows) + " (fixed-feature)")
        best = full[0]
        print(f"best backbone after full-network fine-tuning: {best['model']} (lr {best['lr']:g}): "
              f"validation {best['val']:.2f}%, test {best['test']:.2f}%")
    else:
        print(ranking.top_line(rows))
    return 0


def _score_estimators(cfg, rows: List[Dict], out: Path, allow_pickle: bool) -> Optional[Path]:
    """SELECT.ESTIMATORS on every model's cached features, into the rows and ``estimators.json``;
    ``linear`` (the validation ranking) always leads the table as the baseline."""
    names = ["linear"] + [n for n in cfg.SELECT.ESTIMATORS if n != "linear"]
    if len(names) == 1:
        return None
    import json

    from rdet.select import ranking
    from rdet.select.scoring import score_record

    scores = {r["model"]: score_record(r["record"], names, cfg, allow_pickle) for r in rows}
    ranking.attach_estimators(rows, scores)
    path = out / "estimators.json"
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps({"dataset": cfg.DATA.DATASET, "classes": [int(c) for c in cfg.DATA.CLASSES],
                                   "estimators": names, "knn_k": int(cfg.SELECT.KNN_K), "scores": scores,
                                   "agreement": ranking.estimator_agreement(rows)}, indent=1))
    return path


def _against_paper(cfg, rows: List[Dict], out: Path, mode: str) -> Path:
    """--against-paper: every ranking against the paper's table, printed and in ``against_paper.{md,json}``."""
    import json

    from rdet.select.against_paper import against_paper, summary_lines

    result = against_paper(rows, cfg, mode)
    lines = summary_lines(result, len(rows))
    print("\n" + "\n".join(lines))
    with atomic_path(out / "against_paper.json") as tmp:
        tmp.write_text(json.dumps(result, indent=1))
    path = out / "against_paper.md"
    with atomic_path(path) as tmp:
        tmp.write_text(f"# Rankings against the paper ({result['title']})\n\n" + "\n".join(lines) + "\n")
    return path


def _run_full_network(cfg, select_study: Dict, top: List[Dict]) -> List[Dict]:
    """--full-network: the top models' transfer cells as a study of their own, then their table."""
    from rdet.select.full import full_network_rows, full_network_study
    from rdet.study import run_study

    spec = full_network_study(cfg, select_study, top)
    out = Path(spec["output_dir"])
    out.mkdir(parents=True, exist_ok=True)
    path = out / "study.yaml"
    with atomic_path(path) as tmp:
        tmp.write_text(yaml.safe_dump(spec, sort_keys=False))
    rows = full_network_rows(run_study(path))
    lines = ["| model | lr (chosen on validation) | validation | test | best test over lrs |", "|---|---|---|---|---|"]
    lines += [f"| {r['model']} | {r['lr']:g} | {r['val']:.2f} | {r['test']:.2f} | {r['best_test']:.2f} |" for r in rows]
    with atomic_path(out / "ranking.md") as tmp:
        tmp.write_text("# Full-network fine-tuning of the top models\n\n" + "\n".join(lines) + "\n")
    return rows


main = entry_point(_main)


if __name__ == "__main__":
    raise SystemExit(main())
