"""AutoAttack (Croce & Hein, ICML 2020) through ``pyautoattack`` (0.2.x, the package RobustBench
depends on): the one module that knows that package's API, including the attributes it sets in its
constructor and has no public setter for (marked below).

Versions: ``standard`` (APGD-CE, APGD-T, FAB-T, Square; RobustBench's leaderboard), ``plus``
(adds APGD-DLR and FAB, more restarts) and ``rand`` (APGD-CE and APGD-DLR with 20-sample EOT, for
randomised defences). Inputs are RGB images in [0, 1], ``(N, C, H, W)``, normalisation inside the
model; ``eps`` is a pixel-space radius. The attack runs in fp32 (pyautoattack casts inputs to
float and calls the model as is: rdet never wraps it in autocast).

Classes: the standard and plus versions target the 9 classes after the top one; on a dataset with
fewer than 10 classes pyautoattack would index past the logits, so :func:`build_autoattack` targets
every other class (``C - 1``) there and returns that number for the record. The targeted DLR loss
reads the 4 largest logits and the DLR loss the 3 largest: fewer classes are refused
(:func:`check_classes`).

Randomness: every sub-attack reseeds torch's global generator from ``AutoAttack.seed`` when it
starts (``torch.random.manual_seed``), so one call on the same images with the same seed gives the
same adversarial examples. :func:`run_autoattack` runs inside ``torch.random.fork_rng`` so that the
caller's generator state is left as it was.
"""
from __future__ import annotations

import logging
from typing import Any, Dict, Tuple

import torch

from rdet.core.errors import ConfigError

logger = logging.getLogger(__name__)

VERSIONS = ("standard", "plus", "rand")
_NORM_NAMES = {"linf": "Linf", "l2": "L2"}  # rdet's norm names -> pyautoattack's
# the most logits each version's losses read: targeted DLR (APGD-T) 4, DLR 3
_MIN_CLASSES = {"standard": 4, "plus": 4, "rand": 3}
DEFAULT_TARGETS = 9  # classes after the top one that APGD-T and FAB-T target in standard / plus
_TARGETED = ("standard", "plus")


def check_classes(version: str, num_classes: int) -> None:
    """One-line :class:`ConfigError` when ``version`` cannot run on ``num_classes`` classes."""
    if version not in VERSIONS:
        raise ConfigError(f"ATTACK.AA_VERSION must be one of {', '.join(VERSIONS)}, not {version!r}")
    need = _MIN_CLASSES[version]
    if num_classes < need:
        raise ConfigError(f"AutoAttack {version} needs at least {need} classes (its DLR losses read the {need} "
                          f"largest logits); this evaluation has {num_classes}")


def n_target_classes(version: str, num_classes: int) -> int:
    """How many classes APGD-T and FAB-T target: 9, or every other class below 10 classes; 0 for
    versions without targeted attacks."""
    return min(DEFAULT_TARGETS, num_classes - 1) if version in _TARGETED else 0


def build_autoattack(model: torch.nn.Module, norm: str, eps: float, version: str, num_classes: int,
                     device: torch.device, n_iter: int = 0, n_queries: int = 0):
    """A configured ``pyautoattack.AutoAttack`` and what the record says about it.

    ``n_iter`` > 0 replaces the 100 iterations of APGD and FAB, ``n_queries`` > 0 the 5000 queries
    of Square: a reduced budget for quick runs and tests (the record says so; RobustBench's numbers
    use the defaults). Returns ``(attack, info)``, ``info`` with ``version``, ``sub_attacks``,
    ``n_target_classes``, ``n_iter``, ``n_queries``, ``eot_iter`` and ``standard_budget``.
    """
    from pyautoattack import AutoAttack

    check_classes(version, num_classes)
    if norm not in _NORM_NAMES:
        raise ConfigError(f"AutoAttack norm must be one of {', '.join(_NORM_NAMES)}, not {norm!r}")
    aa = AutoAttack(model, norm=_NORM_NAMES[norm], eps=float(eps), version=version, seed=0, device=device)
    aa.verbose = False  # its progress lines; rdet shows its own progress bar
    targets = n_target_classes(version, num_classes)
    if targets:
        # public attributes that _set_version fixed at 9 targets; no constructor argument reaches them
        aa.apgd_targeted.n_target_classes = targets
        aa.fab.n_target_classes = targets
    reduce_budget(aa, n_iter, n_queries)
    info = {"version": version, "sub_attacks": list(aa.attacks_to_run), "n_target_classes": targets,
            "n_iter": aa.apgd.n_iter, "n_queries": aa.square.n_queries if "square" in aa.attacks_to_run else 0,
            "eot_iter": aa.apgd.eot_iter, "standard_budget": n_iter <= 0 and n_queries <= 0, "precision": "fp32"}
    return aa, info


def reduce_budget(aa, n_iter: int = 0, n_queries: int = 0) -> None:
    """Give a ``pyautoattack.AutoAttack`` ``n_iter`` APGD and FAB iterations and ``n_queries``
    Square queries (each when > 0) instead of the 100 and 5000 its constructor fixes: the public
    attributes its sub-attacks read, set as their constructors would have set them."""
    if n_iter > 0:
        for apgd in (aa.apgd, aa.apgd_targeted):
            _set_apgd_iterations(apgd, n_iter)
        aa.fab.n_iter = n_iter
    if n_queries > 0:
        aa.square.n_queries = n_queries


def _set_apgd_iterations(apgd, n_iter: int) -> None:
    """APGD's iteration count and the checkpoint schedule its constructor derives from it
    (``APGDAttack.__init__``: n_iter_2 = 22%, n_iter_min = 6%, size_decr = 3% of the iterations);
    pyautoattack has no setter that recomputes them."""
    apgd.n_iter = apgd.n_iter_orig = n_iter
    apgd.n_iter_2 = max(int(0.22 * n_iter), 1)
    apgd.n_iter_min = max(int(0.06 * n_iter), 1)
    apgd.size_decr = max(int(0.03 * n_iter), 1)


def run_autoattack(aa, x: torch.Tensor, y: torch.Tensor, seed: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """``(x_adv, pred_adv)`` for one batch: AutoAttack's adversarial images and the model's labels
    for them (the clean prediction where the image was misclassified already or withstood every
    attack). Seeded with ``seed``; the caller's random state is kept.

    Pass a fresh attack from :func:`build_autoattack` for every batch: pyautoattack changes its
    sub-attacks' settings while it runs (FAB-T leaves ``fab.n_restarts`` at 1, which the plus
    version's untargeted FAB would then inherit), so a reused object would make a batch's result
    depend on the batches before it."""
    aa.seed = int(seed)
    devices = [x.device] if x.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        x_adv, y_adv = aa.run_standard_evaluation(x, y, batch_size=x.shape[0])
    return x_adv, y_adv


class AutoAttackRunner:
    """``runner(x, y, seed) -> (x_adv, pred_adv)`` with a fresh, identically configured AutoAttack
    per call (see :func:`run_autoattack`); ``runner.info`` is what the record says about it."""

    def __init__(self, model: torch.nn.Module, norm: str, eps: float, version: str, num_classes: int,
                 device: torch.device, n_iter: int = 0, n_queries: int = 0):
        self.args = (model, norm, eps, version, num_classes, device, n_iter, n_queries)
        _, self.info = build_autoattack(*self.args)

    def __call__(self, x: torch.Tensor, y: torch.Tensor, seed: int) -> Tuple[torch.Tensor, torch.Tensor]:
        aa, _ = build_autoattack(*self.args)
        return run_autoattack(aa, x, y, seed)


def describe(info: Dict[str, Any]) -> str:
    """One line for the log: the version, its sub-attacks and budget."""
    budget = "" if info["standard_budget"] else f", REDUCED budget: {info['n_iter']} iterations"
    if not info["standard_budget"] and info["n_queries"]:
        budget += f", {info['n_queries']} Square queries"
    targets = f", {info['n_target_classes']} target classes" if info["n_target_classes"] else ""
    return f"AutoAttack {info['version']} ({', '.join(info['sub_attacks'])}{targets}{budget}; fp32)"
