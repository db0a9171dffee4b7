"""Every config key's rule, in one table: its check and whether it is part of a run's signature.

The defaults live in :mod:`rdet.config.defaults` (one function per task, detectron2's
``get_cfg()``); this table says, for each of those keys,

* what a valid value is: a numeric range (``lo``/``hi``, each side inclusive unless marked open),
  a set of ``choices``, or ``free`` (any value of the default's type: paths, names, lists checked
  by the code that reads them, e.g. a dataset name by the dataset catalog);
* ``sig``: whether the key defines what a run computes, so that resuming refuses a checkpoint (or
  a half-done evaluation) made under another value (:func:`run_signature`): ``True`` for what a
  training run computes; :data:`EVAL` for what only an evaluation's predictions depend on (the
  test preprocessing, the attacks, the clean pass's precision), which resumes ``rdet evaluate``
  batch by batch but never blocks resuming a training run; ``False`` for where the data lives, how
  many loader workers read it, the device and the like. One signature, one table, every task.

``tests/test_config.py`` fails when a key of any default config lacks an entry here, so a key
cannot be added without deciding both. :func:`check_cfg` applies the table to a config before
any work starts, with one-line errors that name the key and its rule.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Dict, Iterator, Optional, Sequence, Tuple

from rdet.core.errors import ConfigError


EVAL = "eval"  # a Rule.sig: part of an evaluation's signature only


@dataclass(frozen=True)
class Rule:
    sig: Any  # True | EVAL | False
    lo: Optional[float] = None
    hi: Optional[float] = None
    lo_open: bool = False
    hi_open: bool = False
    choices: Optional[Tuple[Any, ...]] = None
    free: bool = False  # no value check here (the code that reads the key checks it)

    def describe(self) -> str:
        if self.choices is not None:
            return "one of " + ", ".join(map(str, self.choices))
        if self.hi is None:
            return f"{'>' if self.lo_open else '>='} {self.lo:g}"
        if self.lo is None:
            return f"{'<' if self.hi_open else '<='} {self.hi:g}"
        return f"in {'(' if self.lo_open else '['}{self.lo:g}, {self.hi:g}{')' if self.hi_open else ']'}"

    def ok(self, v: Any) -> bool:
        if self.choices is not None:
            return v in self.choices
        if not isinstance(v, (int, float)) or isinstance(v, bool) or math.isnan(v):
            return False
        return ((self.lo is None or (v > self.lo if self.lo_open else v >= self.lo))
                and (self.hi is None or (v < self.hi if self.hi_open else v <= self.hi)))


def _r(sig: bool, lo=None, hi=None, lo_open=False, hi_open=False) -> Rule:
    return Rule(sig, lo, hi, lo_open, hi_open)


def _c(sig: bool, *choices) -> Rule:
    return Rule(sig, choices=tuple(choices))


def _free(sig: bool) -> Rule:
    return Rule(sig, free=True)


BOOL = (True, False)

SCHEMA: Dict[str, Rule] = {
    "OUTPUT_DIR": _free(False),
    "SEED": _r(True, 0),
    # MODEL
    "MODEL.ARCH": _free(True),  # the backbone registry refuses an unknown name
    "MODEL.WEIGHTS": _free(True),
    "MODEL.ALLOW_PICKLE": _c(False, *BOOL),
    "MODEL.BN": _c(True, "train", "fixed_stats", "sync"),
    "MODEL.INPUT_NORM": _c(True, "", "imagenet", "raw", "inception"),
    "MODEL.WEIGHTS_VARIANT": _c(True, "", "plain", "ema"),
    # DATA
    "DATA.DATASET": _free(True),
    "DATA.ROOT": _free(False),
    "DATA.CLASSES": _free(True),
    "DATA.TRAIN_SIZE": _r(True, 1),
    "DATA.AUGMENT": _c(True, *BOOL),
    "DATA.CROP_SCALE_MIN": _r(True, 0, 1, lo_open=True),
    "DATA.AUGMENT_POLICY": _c(True, "auto", "paper_transfer", "robustness_imagenet"),
    "DATA.ALLOW_MISSING_TEST_CLASSES": _c(True, *BOOL),
    "DATA.VERIFY_IMAGES": _c(False, "quick", "decode", "off"),
    "DATA.SKIP_BAD_FILES": _c(False, *BOOL),
    "DATA.TEST_RESIZE": _r(EVAL, 0),
    "DATA.TEST_INTERPOLATION": _c(EVAL, "auto", "bilinear", "bicubic"),  # test-time, as DATA.TEST_RESIZE
    "DATA.TEST_CROP": _c(EVAL, "auto", "center", "squash"),
    "DATA.DOWNSCALE": _r(True, 0),
    "DATA.NUM_WORKERS": _r(False, 0),
    "DATA.MAX_TRAIN": _r(True, 0),
    "DATA.MAX_TEST": _r(EVAL, 0),
    "DATA.VAL_SIZE": _r(True, 0),
    "DATA.VAL_SEED": _r(True, 0),
    # SOLVER
    "SOLVER.BATCH_SIZE": _r(True, 1),
    "SOLVER.BASE_LR": _r(True, 0, lo_open=True),
    "SOLVER.MOMENTUM": _r(True, 0, 1, hi_open=True),
    "SOLVER.WEIGHT_DECAY": _r(True, 0),
    "SOLVER.EPOCHS": _r(True, 1),
    "SOLVER.LR_STEP_EPOCHS": _r(True, 1),
    "SOLVER.GAMMA": _r(True, 0, lo_open=True),
    "SOLVER.RECIPE": _free(True),  # a label; the keys below define the recipe
    "SOLVER.OPTIMIZER": _c(True, "sgd", "adamw"),
    "SOLVER.BETAS": _r(True, 0, 1, hi_open=True),
    "SOLVER.NO_WD_1D": _c(True, *BOOL),
    "SOLVER.LR_SCHEDULE": _c(True, "step", "cosine"),
    "SOLVER.MIN_LR_FACTOR": _r(True, 0, 1),
    "SOLVER.WARMUP_EPOCHS": _r(True, 0),
    "SOLVER.WARMUP_FACTOR": _r(True, 0, 1, lo_open=True),
    "SOLVER.LAYER_DECAY": _r(True, 0, 1, lo_open=True),
    # RUNTIME: how, not what
    "RUNTIME.DEVICE": _c(False, "auto", "cpu", "cuda"),
    "RUNTIME.AMP": _c(EVAL, "off", "bf16", "fp16"),
    "RUNTIME.ALLOW_SLOW_AMP": _c(False, *BOOL),
    "RUNTIME.CHANNELS_LAST": _c(False, *BOOL),
    "RUNTIME.LOG_EVERY": _r(False, 1),
    "RUNTIME.RESUME_MISMATCH": _c(False, "error", "restart"),
    "RUNTIME.CHECKPOINT_MINUTES": _r(False, 0),  # when to save, not what is computed
    "RUNTIME.CHECKPOINT_EVERY_ITERS": _r(False, 0),
    # TRANSFER
    "TRANSFER.MODE": _c(True, "fixed", "full"),
    "TRANSFER.LR_GRID": _r(False, 0, lo_open=True),  # --grid expands it into runs, each with its own BASE_LR
    "TRANSFER.SEEDS": _r(False, 0),
    "TRANSFER.CACHE_FEATURES": _c(True, *BOOL),
    "TRANSFER.CACHE_VIEWS": _r(True, 1),
    "TRANSFER.EVAL_EVERY": _r(True, 0),  # which epochs are evaluated: part of the record's best_value
    # ADV (pretraining)
    "ADV.NORM": _c(True, "l2", "linf"),
    "ADV.EPS": _r(True, 0),
    "ADV.STEPS": _r(True, 1),
    "ADV.STEP_SIZE_FACTOR": _r(True, 0, lo_open=True),
    "ADV.RANDOM_START": _c(True, *BOOL),
    "ADV.METHOD": _c(True, "pgd", "fgsm_rs", "free"),
    "ADV.FGSM_STEP_FACTOR": _r(True, 0, lo_open=True),
    "ADV.FREE_REPLAYS": _r(True, 1),
    "ADV.ATTACK_MODE": _c(True, "eval", "train"),
    "ADV.USE_BEST": _c(True, *BOOL),
    "ADV.GUARD": _c(True, "auto", "on", "off"),
    "ADV.GUARD_SAMPLES": _r(True, 1),
    "ADV.GUARD_STEPS": _r(True, 1),
    "ADV.GUARD_MARGIN": _r(True, 0),
    "ADV.EVAL_STEPS": _r(False, 1),  # the final evaluation only
    # ATTACK / EVAL (robust evaluation: what its predictions depend on)
    "ATTACK.NORM": _c(EVAL, "l2", "linf"),
    "ATTACK.EPS": _r(EVAL, 0),
    "ATTACK.STEPS": _r(EVAL, 1),
    "ATTACK.RESTARTS": _r(EVAL, 1),
    "ATTACK.STEP_SIZE_FACTOR": _r(EVAL, 0),
    "ATTACK.TYPES": _c(EVAL, "pgd", "autoattack"),
    "ATTACK.AA_VERSION": _c(EVAL, "standard", "plus", "rand"),
    "ATTACK.AA_N_ITER": _r(EVAL, 0),  # 0: pyautoattack's own default
    "ATTACK.AA_N_QUERIES": _r(EVAL, 0),
    "EVAL.FIT_HEAD": _c(EVAL, *BOOL),
    "EVAL.SUBSET": _c(EVAL, "", "robustbench"),
    "EVAL.SUBSET_LIST": _free(False),
    "EVAL.FIT_HEAD_VIEWS": _r(EVAL, 1),
    # SELECT (rdet.select; its cache key is built from the values it uses)
    "SELECT.VIEWS": _r(False, 1),
    "SELECT.EXTRACT_BATCH": _r(False, 1),
    "SELECT.CACHE_DTYPE": _c(False, "float16", "float32"),
    "SELECT.LOGREG_L2": _r(False, 0, lo_open=True),
    "SELECT.LOGREG_MAX_ITER": _r(False, 1),
    "SELECT.ESTIMATORS": _c(False, "logme", "leep", "nleep", "nce", "hscore", "sfda", "knn", "linear"),  # = estimators.ESTIMATOR_NAMES
    "SELECT.KNN_K": _r(False, 1),
}


# The keys rdet adds to detectron2's config (rdet.detection: the optimizer, the timm backbones):
# their rules, checked by check_detection_cfg before a detection or segmentation run. The optimizer
# keys share the classification rules (one spelling: sgd | adamw).
DETECTION_RULES: Dict[str, Rule] = {
    "SOLVER.OPTIMIZER": SCHEMA["SOLVER.OPTIMIZER"],
    "SOLVER.BETAS": SCHEMA["SOLVER.BETAS"],
    "SOLVER.LAYER_DECAY": SCHEMA["SOLVER.LAYER_DECAY"],
    "SOLVER.LAYER_DECAY_MODE": _c(True, "layer", "stage"),
    "MODEL.TIMM.DROP_PATH_RATE": _r(True, 0, 1, hi_open=True),
    "MODEL.TIMM.WINDOW_SIZE": _r(True, 0),
    "MODEL.TIMM.SQUARE_PAD": _r(True, 0),
}


def check_detection_cfg(cfg) -> None:
    """:data:`DETECTION_RULES` applied to a detectron2 config (keys it lacks are skipped)."""
    for key in DETECTION_RULES:
        node = cfg
        for part in key.split("."):
            node = node.get(part) if hasattr(node, "get") else None
        if node is not None:
            check_value(key, node)


def add_rules(rules: Dict[str, Rule]) -> None:
    """Rules for the config keys of a task kind defined outside rdet (its own ``CfgNode`` section):
    :func:`check_cfg` then checks them like rdet's own. A key that has a rule already is refused."""
    taken = sorted(set(rules) & set(SCHEMA))
    if taken:
        raise ValueError(f"config keys with a rule already: {', '.join(taken)}")
    SCHEMA.update(rules)


def at_least(sig: bool, lo: float) -> Rule:
    """A key whose values are numbers >= ``lo`` (``sig``: part of a run's resume signature)."""
    return _r(sig, lo)


def one_of(sig: bool, *choices) -> Rule:
    return _c(sig, *choices)


def flat_items(node, prefix: str = "") -> Iterator[Tuple[str, Any]]:
    """``("SECTION.KEY", value)`` for every leaf of a CfgNode."""
    for k, v in node.items():
        key = f"{prefix}{k}"
        if hasattr(v, "items"):
            yield from flat_items(v, key + ".")
        else:
            yield key, v


def rule_of(key: str) -> Rule:
    try:
        return SCHEMA.get(key) or DETECTION_RULES[key]
    except KeyError:
        raise ConfigError(f"{key}: no rule in rdet/config/schema.py (every config key needs one)") from None


def check_value(key: str, value: Any) -> None:
    """One-line :class:`ConfigError` naming ``key`` and its rule when ``value`` breaks it (each item of
    a list is checked)."""
    rule = rule_of(key)
    if rule.free:
        return
    many = isinstance(value, (list, tuple))
    for v in value if many else [value]:
        if not rule.ok(v):
            raise ConfigError(f"{key}{' items' if many else ''} must be {rule.describe()}, not {v!r}")


def check_cfg(cfg, skip: Sequence[str] = ()) -> None:
    """Every key of ``cfg`` against its rule, then the settings this machine cannot run as asked
    (:mod:`rdet.config.hardware`), before any work starts."""
    from rdet.config.hardware import check_precision

    for key, value in flat_items(cfg):
        if key not in skip:
            check_value(key, value)
    check_precision(cfg)


def run_signature(cfg, evaluation: bool = False) -> Dict[str, Any]:
    """Flat ``{"SECTION.KEY": value}`` of the keys of ``cfg`` that define what a training run
    computes, and with ``evaluation`` also those an evaluation's predictions depend on."""
    wanted = (True, EVAL) if evaluation else (True,)
    return {key: list(value) if isinstance(value, tuple) else value
            for key, value in flat_items(cfg) if rule_of(key).sig in wanted}
