"""Clean and robust accuracy of any checkpoint the backbone registry loads: PGD and AutoAttack.

    python -m rdet evaluate --weights resnet50_l2_eps3 --data /data/imagenet --norm l2 --eps 0.25 0.5 1 3
    python -m rdet evaluate --weights resnet50_linf_eps4 --data /data/imagenet --subset robustbench \\
        --attack pgd autoattack --norm linf --eps 0.0156863
    python -m rdet evaluate --weights output/pretrain_demo/model_final.pth --dataset fashion_mnist \\
        --config-file configs/pretrain_demo.yaml --norm linf --eps 0.01 0.03

``--config-file`` takes an evaluation config, or the training config of the model (pretraining or
transfer): from those only DATA.* and RUNTIME.* are used (which classes, image size, test subset).

The checkpoint's classifier head must belong to the dataset evaluated: the same number of classes
and, for rdet checkpoints, the same dataset and class subset. Otherwise the run is refused before
any work, unless ``--fit-head`` (EVAL.FIT_HEAD True) asks to first fit a linear head on the
dataset's training split with the body frozen (EVAL.FIT_HEAD_VIEWS cached augmented views,
SOLVER.* for the optimiser and schedule); the output and the record then say so.

Attacks (ATTACK.TYPES, ``--attack``), each at every ATTACK.EPS, model in eval mode:

* ``pgd`` (``rdet.attacks.pgd``): a random start in the ball, ATTACK.STEPS steps of
  2.5 * eps / STEPS, per image the most successful of ATTACK.RESTARTS restarts; RUNTIME.AMP applies.
* ``autoattack`` (``rdet.attacks.autoattack``, pyautoattack): ATTACK.AA_VERSION standard (APGD-CE,
  APGD-T, FAB-T, Square; RobustBench's protocol), plus or rand; always fp32. Below 10 classes its
  targeted attacks target every other class (C - 1) instead of 9; the record says how many.

``--subset robustbench`` (EVAL.SUBSET) evaluates ImageNet on RobustBench's fixed 5,000 validation
images in its order (``rdet.data.robustbench``); a listed image missing from the folder is refused.

Batches of SOLVER.BATCH_SIZE images are fixed chunks of the test set; torchrun processes take whole
batches in turn and every attack on batch k is seeded from (SEED, k) (``rdet.engine.robust_eval``),
so one process and several give the same numbers. Each finished batch is saved under
``OUTPUT_DIR/per_image.partial/``: a killed run started again with the same settings continues
where it stopped and ends with the same numbers. Writes ``result.json`` (clean top-1 and one entry
per attack and eps under ``attacks``; the backbone's metadata: arch, training norm/eps/method, null
where the checkpoint does not say) and ``per_image.csv`` (per image: label, clean prediction and
correctness, and per attack the prediction and whether it withstood the attack), atomically.
"""
from __future__ import annotations

import contextlib
import hashlib
import logging
import shutil
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import torch

from rdet.attacks import pgd
from rdet.attacks.autoattack import AutoAttackRunner, check_classes, describe
from rdet.backbones import classifier_from
from rdet.backbones.catalog import get_entry
from rdet.backbones.checkpoint import LoadedCheckpoint, load_checkpoint, resolve
from rdet.backbones.registry import get_spec
from rdet.config import CfgNode, check_config_file, merge_config
from rdet.core.atomic import remove_stale_temps
from rdet.core.records import write_record
from rdet.core.errors import ConfigError
from rdet.core.metrics import confusion_matrix, scores_from_confusion
from rdet.core.runlock import output_lock
from rdet.data.build import check_images, datasets_from_cfg
from rdet.data.classification import image_files_of
from rdet.data.paths import data_root_from_cfg
from rdet.data.robustbench import N_IMAGES as RB_IMAGES, SUBSETS, robustbench_imagenet
from rdet.data.transforms import preprocessing_from_cfg, transforms_from_cfg
from rdet.engine import build_loader, setup_runtime
from rdet.engine.robust_eval import Attack, collect, prepare_state, run_batches, write_per_image
from rdet.transfer import extract_views, train_head_on_features
from rdet.config.schema import check_cfg, rule_of, run_signature
from rdet.tasks.checks import check_output_dir, check_weights_arg

logger = logging.getLogger(__name__)

RESULT_NAME = "result.json"
PER_IMAGE_NAME = "per_image.csv"
STATE_NAME = "per_image.partial"  # per-batch results of an unfinished run (removed when it finishes)

CATALOG_CLASSES = 1000  # every released model is an ImageNet classifier
_FROM_TRAINING_CONFIG = ("DATA", "RUNTIME")


def merge_config_file(cfg: CfgNode, path: str) -> CfgNode:
    """Merge an evaluation config, or DATA.*/RUNTIME.* of a training config, into ``cfg``."""
    data = check_config_file(path)
    if not {"ADV", "TRANSFER"} & set(data):
        return merge_config(cfg, path)
    kept = CfgNode({k: data[k] for k in _FROM_TRAINING_CONFIG if k in data})
    logger.info("%s is a training config: using its %s settings", path, " and ".join(sorted(kept)) or "no")
    try:
        cfg.merge_from_other_cfg(kept)
    except (KeyError, ValueError, AssertionError, TypeError) as e:
        raise ConfigError(f"{path}: {str(e).splitlines()[0]}") from None
    return cfg


def check_inputs(cfg) -> str:
    """One-line errors for every bad setting, before anything is loaded or written; returns the
    kind of MODEL.WEIGHTS ("file" or "catalog")."""
    check_cfg(cfg)  # every key's range or choices (rdet.config.schema)
    types = list(cfg.ATTACK.TYPES)
    if not types or len(set(types)) != len(types):
        raise ConfigError(f"ATTACK.TYPES must name each of {', '.join(rule_of('ATTACK.TYPES').choices)} at most "
                          f"once, not {types}")
    _check_subset(cfg)
    kind = check_weights_arg(cfg.MODEL.WEIGHTS)
    check_output_dir(cfg.OUTPUT_DIR)
    return kind


def _check_subset(cfg) -> None:
    sub = cfg.EVAL.SUBSET
    if not sub:
        if cfg.EVAL.SUBSET_LIST:
            raise ConfigError("EVAL.SUBSET_LIST is set but EVAL.SUBSET is not (use --subset robustbench)")
        return
    if sub not in SUBSETS:
        raise ConfigError(f"EVAL.SUBSET must be one of {', '.join(SUBSETS)} (or empty), not {sub!r}")
    clash = [(cfg.DATA.DATASET != "imagenet", f"DATA.DATASET {cfg.DATA.DATASET}"),
             (bool(cfg.DATA.CLASSES), "DATA.CLASSES"), (bool(cfg.DATA.VAL_SIZE), "DATA.VAL_SIZE"),
             (bool(cfg.EVAL.FIT_HEAD), "EVAL.FIT_HEAD")]
    named = [what for hit, what in clash if hit]
    if named:
        raise ConfigError(f"EVAL.SUBSET robustbench is ImageNet's own 1000-class validation subset: it does not go "
                          f"with {', '.join(named)}")


def head_mismatch(head_classes: Optional[int], meta: Dict[str, Any], cfg, num_classes: int) -> Optional[str]:
    """Why the checkpoint's head does not fit the evaluated data (``None`` when it does)."""
    data = f"{cfg.DATA.DATASET}{_classes_label(cfg.DATA.CLASSES)}"
    if head_classes is None:
        return "the checkpoint has no classifier head"
    if head_classes != num_classes:
        return f"the checkpoint's head has {head_classes} classes but {data} has {num_classes}"
    trained_on = meta.get("dataset")
    if trained_on and (trained_on, _subset(meta.get("classes"), num_classes)) != \
            (cfg.DATA.DATASET, _subset(cfg.DATA.CLASSES, num_classes)):
        return f"the checkpoint's head was trained on {trained_on}{_classes_label(meta.get('classes'))}, not {data}"
    return None


def _subset(classes, num_classes: int) -> list:
    """DATA.CLASSES with "every class in order" written as []."""
    classes = list(classes or [])
    return [] if classes == list(range(num_classes)) else classes


def _classes_label(classes) -> str:
    return f" classes {list(classes)}" if classes else ""


def _refuse_or_fit(why: Optional[str], cfg, rt) -> Optional[str]:
    if why is None:
        return None
    if not cfg.EVAL.FIT_HEAD:
        raise ConfigError(f"{why}: its predictions would come from a random head; pass --fit-head "
                          f"(EVAL.FIT_HEAD True) to fit a linear head on the training split first")
    if rt.distributed:
        raise ConfigError("EVAL.FIT_HEAD runs in one process: start rdet.evaluate without torchrun")
    return why


def backbone_meta(loaded: LoadedCheckpoint, weights: str) -> Dict[str, Any]:
    """What the checkpoint says about its training; ``None`` where it says nothing (unknown, not 0)."""
    m = loaded.meta
    eps = m.get("eps")
    method = m.get("method")
    if method is None and eps is not None:  # the paper's released models: PGD, or standard at eps 0
        method = "standard" if eps == 0 else ("pgd" if m.get("format") == "robustness" else None)
    return {"arch": loaded.arch, "norm": None if eps == 0 else m.get("norm"), "eps": eps, "method": method,
            "trained_on": m.get("dataset"), "classes": m.get("classes"), "format": m.get("format"),
            "input_norm": m.get("input_norm"), "weights_variant": m.get("weights_variant"), "source": str(weights)}


def _head_classes(loaded: LoadedCheckpoint) -> Optional[int]:
    w = loaded.state_dict.get(get_spec(loaded.arch).classifier + ".weight")
    return int(w.shape[0]) if w is not None else None


def fit_head(model, train_ds, cfg, rt, num_classes: int) -> Dict[str, Any]:
    """Train a fresh linear head on frozen features of EVAL.FIT_HEAD_VIEWS augmented views of the
    training split (``rdet.transfer.feature_cache``); returns what the record says about it."""
    model.reset_head(num_classes)
    loader = build_loader(train_ds, cfg, rt, train=False)  # in order: features align with labels
    views, labels = extract_views(model, loader, rt, cfg.EVAL.FIT_HEAD_VIEWS, cfg.SEED)
    stats = train_head_on_features(model.head.float(), views, labels, cfg, cfg.SOLVER.BASE_LR, cfg.SEED, rt=rt)
    return {"views": cfg.EVAL.FIT_HEAD_VIEWS, "epochs": cfg.SOLVER.EPOCHS, "lr": cfg.SOLVER.BASE_LR,
            "batch_size": cfg.SOLVER.BATCH_SIZE, "train_images": len(labels),
            "train_top1_last_epoch": stats.get("acc")}


def load_test_data(cfg):
    """``(train or None, test, num_classes, data_note)``: the dataset's splits, or RobustBench's
    ImageNet subset (no training split: the subset is for 1000-class ImageNet heads only)."""
    if not cfg.EVAL.SUBSET:
        return datasets_from_cfg(cfg)
    d = cfg.DATA
    root = data_root_from_cfg(cfg)
    test = robustbench_imagenet(root, transforms_from_cfg(cfg)[1], CATALOG_CLASSES, cfg.EVAL.SUBSET_LIST or None,
                                d.MAX_TEST)
    test, bad = check_images(test, d.VERIFY_IMAGES, False, d.NUM_WORKERS, "imagenet robustbench subset")
    which = (f"the first {len(test)} of RobustBench's {RB_IMAGES} ImageNet validation images" if d.MAX_TEST
             else f"RobustBench's ImageNet subset ({len(test)} validation images, its order)")
    if cfg.EVAL.SUBSET_LIST:
        which += f" listed in {cfg.EVAL.SUBSET_LIST}"
    return None, test, CATALOG_CLASSES, f"{which} from {root / 'val'} at {d.TRAIN_SIZE}px"


def build_attacks(cfg, model, rt, num_classes: int) -> List[Attack]:
    """One :class:`Attack` per (attack type, eps), in ATTACK.TYPES then ATTACK.EPS order, on
    ``model`` (eval mode, inputs in [0, 1])."""
    a = cfg.ATTACK
    attacks = []
    for kind in a.TYPES:
        for eps in a.EPS:
            eps = float(eps)
            if kind == "pgd":
                step = a.STEP_SIZE_FACTOR * eps if a.STEP_SIZE_FACTOR > 0 else 2.5 * eps / a.STEPS
                rec = {"attack": "pgd", "norm": a.NORM, "eps": eps, "steps": a.STEPS, "step_size": step,
                       "restarts": a.RESTARTS, "random_start": True, "seed": cfg.SEED, "amp": cfg.RUNTIME.AMP}
                attacks.append(Attack(f"pgd_{a.NORM}_{eps:g}", _pgd_fn(eps, a.NORM, a.STEPS, step, a.RESTARTS, rt), rec))
            else:
                runner = AutoAttackRunner(model, a.NORM, eps, a.AA_VERSION, num_classes, rt.device,
                                          a.AA_N_ITER, a.AA_N_QUERIES)
                rec = {"attack": "autoattack", "version": a.AA_VERSION, "norm": a.NORM, "eps": eps, "seed": cfg.SEED,
                       **runner.info}
                attacks.append(Attack(f"autoattack_{a.AA_VERSION}_{a.NORM}_{eps:g}",
                                      lambda model, x, y, seed, r=runner: r(x, y, seed)[1], rec))
    return attacks


def _pgd_fn(eps, norm, steps, step, restarts, rt):
    def attack(model, x, y, seed):
        devices = [x.device] if x.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):  # the batch's own random starts
            torch.manual_seed(seed)
            x_adv = pgd(model, x, y, eps, norm, steps, step, rand_init=True, restarts=restarts, autocast=rt.autocast)
        with torch.no_grad(), rt.autocast():
            return model(x_adv).float().argmax(1)
    return attack


def run(cfg) -> Dict[str, Any]:
    """Check everything, then evaluate clean and under every attack at every ATTACK.EPS, batch by
    batch (resuming a killed run of the same settings); writes and returns the ``result.json``
    record (every process returns it)."""
    kind = check_inputs(cfg)
    start = time.time()
    rt = setup_runtime(cfg)

    def load():
        return load_checkpoint(resolve(cfg.MODEL.WEIGHTS), allow_pickle=cfg.MODEL.ALLOW_PICKLE,
                               input_norm=cfg.MODEL.INPUT_NORM, variant=cfg.MODEL.WEIGHTS_VARIANT)

    # The test preprocessing is the weights' own (rdet.data.transforms.preprocessing_from_cfg): the
    # arch must be known before the data is built. A catalog model's is known before its download.
    loaded = load() if kind == "file" else None
    cfg.MODEL.ARCH = loaded.arch if loaded else get_entry(cfg.MODEL.WEIGHTS).arch
    prep = preprocessing_from_cfg(cfg)
    train_ds, test, num_classes, note = load_test_data(cfg)
    if "autoattack" in cfg.ATTACK.TYPES:
        check_classes(cfg.ATTACK.AA_VERSION, num_classes)
    if kind == "catalog":  # known before the download
        _refuse_or_fit(head_mismatch(CATALOG_CLASSES, {}, cfg, num_classes), cfg, rt)
        loaded = load()
    why = _refuse_or_fit(head_mismatch(_head_classes(loaded), loaded.meta, cfg, num_classes), cfg, rt)
    model = classifier_from(loaded, num_classes, with_head=why is None, what=str(cfg.MODEL.WEIGHTS))
    model = rt.prepare(model)
    loaded.state_dict = {}  # the model holds its own copy
    out = Path(cfg.OUTPUT_DIR)
    with contextlib.ExitStack() as held:
        if rt.is_main:  # every input is valid: now the folder may be created and held
            out.mkdir(parents=True, exist_ok=True)
            held.enter_context(output_lock(out))
            remove_stale_temps(out)
        head = {"source": "checkpoint"}
        if why is not None:
            logger.info("%s: fitting a linear head on %s's training split (frozen body)", why, cfg.DATA.DATASET)
            head = {"source": "fitted on the training split (frozen body)", "reason": why,
                    **fit_head(model, train_ds, cfg, rt, num_classes)}
        model.eval()
        attacks = build_attacks(cfg, model, rt, num_classes)
        _log_attacks(cfg, attacks, num_classes)
        ids = image_ids(test, cfg)
        state = out / STATE_NAME
        done = prepare_state(state, _state_signature(cfg, ids, head), rt, cfg.RUNTIME.RESUME_MISMATCH)
        if done:
            logger.info("resuming: %d batches already evaluated in %s", len(done), state)
        run_batches(model, test, attacks, rt, cfg.SOLVER.BATCH_SIZE, cfg.SEED, state, done, cfg.DATA.NUM_WORKERS, ids)
        rt.barrier()  # every process's batches are on disk
        if rt.is_main:
            rows = collect(state, len(test), [a.column for a in attacks])
            result = _summarise(cfg, rows, attacks, out, num_classes)
            result.update({"weights": cfg.MODEL.WEIGHTS, "arch": model.spec.name,
                           "backbone": backbone_meta(loaded, cfg.MODEL.WEIGHTS), "head": head,
                           "dataset": cfg.DATA.DATASET, "classes": list(cfg.DATA.CLASSES),
                           "subset": cfg.EVAL.SUBSET or None, "data_note": note, "amp": cfg.RUNTIME.AMP,
                           "preprocessing": prep.record(), "image_size": cfg.DATA.TRAIN_SIZE,
                           "downscale": cfg.DATA.DOWNSCALE, "images_sha1": _ids_sha1(ids),
                           "world_size": rt.world_size, "batch_size": cfg.SOLVER.BATCH_SIZE, "seed": cfg.SEED,
                           "resumed_batches": len(done), "wall_time_s": time.time() - start})
            write_record(out, result)
            shutil.rmtree(state)
        rt.barrier()
    if not rt.is_main:
        import json

        result = json.loads((out / RESULT_NAME).read_text())
    return result


def image_ids(test, cfg) -> List[str]:
    """Each test image's id for ``per_image.csv``: its file relative to the data root
    (RobustBench's subset: to ``val/``, as RobustBench's list names it), or its index in the
    test split for in-memory datasets."""
    files = image_files_of(test)
    if files is None:
        return [str(i) for i in range(len(test))]
    base = data_root_from_cfg(cfg) / ("val" if cfg.EVAL.SUBSET else "")
    out = []
    for f in files:
        try:
            out.append(str(Path(f).relative_to(base)))
        except ValueError:
            out.append(str(f))
    return out


def _ids_sha1(ids: List[str]) -> str:
    """The evaluated images, in order, as one digest: RobustBench's subset is recognised by it
    (:func:`rdet.data.robustbench.list_sha1` of its list), whatever file the list came from."""
    return hashlib.sha1("\n".join(ids).encode()).hexdigest()


def _state_signature(cfg, ids: List[str], head: Dict[str, Any]) -> Dict[str, Any]:
    """What a partial evaluation must share with this run to be continued: every key the schema
    says an evaluation depends on (:func:`rdet.config.schema.run_signature`), and what the config
    cannot say: the weights file's size, the images (their ids, hashed) and where the head came from."""
    weights = Path(str(cfg.MODEL.WEIGHTS))
    return {**run_signature(cfg, evaluation=True),
            "weights_bytes": weights.stat().st_size if weights.is_file() else None,
            "images": len(ids), "images_sha1": _ids_sha1(ids), "head": head.get("source")}


def _log_attacks(cfg, attacks: List[Attack], num_classes: int) -> None:
    for a in attacks:
        r = a.record
        if r["attack"] == "pgd":
            logger.info("PGD-%d %s eps=%g: step %g, %d restart(s), random start", r["steps"], r["norm"], r["eps"],
                        r["step_size"], r["restarts"])
        else:
            logger.info("%s %s eps=%g, seed %d", describe(r), r["norm"], r["eps"], r["seed"])
    aa = next((a.record for a in attacks if a.record["attack"] == "autoattack"), None)
    if aa is None:
        return
    if cfg.RUNTIME.AMP != "off":
        logger.info("AutoAttack runs in fp32: RUNTIME.AMP %s applies to the clean pass and PGD only", cfg.RUNTIME.AMP)
    if aa["n_target_classes"] and num_classes < 10:
        logger.info("AutoAttack %s: %d classes, so APGD-T and FAB-T target every other class (%d) instead of 9",
                    aa["version"], num_classes, aa["n_target_classes"])
    if not aa["standard_budget"]:
        logger.warning("AutoAttack with a REDUCED budget (ATTACK.AA_N_ITER %d, AA_N_QUERIES %d): not comparable "
                       "with RobustBench's numbers", cfg.ATTACK.AA_N_ITER, cfg.ATTACK.AA_N_QUERIES)


def _scores(rows, column: str, num_classes: int) -> Dict[str, float]:
    pred = torch.tensor([r[column] for r in rows], dtype=torch.long)
    label = torch.tensor([r["label"] for r in rows], dtype=torch.long)
    s = scores_from_confusion(confusion_matrix(pred, label, num_classes).double())
    return {"top1": s["top1"], "mean_per_class": s["mean_per_class"], "n_correct": int((pred == label).sum())}


def _summarise(cfg, rows, attacks: List[Attack], out: Path, num_classes: int) -> Dict[str, Any]:
    """``per_image.csv`` and the numbers of ``result.json`` from every image's predictions."""
    columns = [a.column for a in attacks]
    write_per_image(rows, columns, out / PER_IMAGE_NAME)
    clean = _scores(rows, "clean", num_classes)
    entries = []
    for a in attacks:
        s = _scores(rows, a.column, num_classes)
        entries.append({**a.record, "column": a.column, "n_images": len(rows), "n_robust": s["n_correct"],
                        "robust_top1": s["top1"], "robust_mean_per_class": s["mean_per_class"]})
    return {"task": "robustness", "n_images": len(rows), "clean_top1": clean["top1"],
            "clean_mean_per_class": clean["mean_per_class"], "attacks": entries, "per_image": PER_IMAGE_NAME}
