"""Standard (eps = 0) and adversarial ImageNet-style pretraining of any registry architecture.

    python -m rdet pretrain                              # offline demo: Fashion-MNIST 0-4, ResNet-18
    python -m rdet pretrain --data /data/imagenet --arch resnet50 --eps 3 --norm l2
    torchrun --nproc_per_node 8 -m rdet pretrain --config-file configs/pretrain_imagenet_r50.yaml
    python -m rdet pretrain ... ADV.METHOD fgsm_rs       # fast adversarial training (Wong et al.)

Paper defaults (appendix A.1, the robustness library's training settings) come from
``rdet.config.get_pretrain_cfg``: each batch is replaced by PGD examples (ADV.STEPS steps of
ADV.STEP_SIZE_FACTOR * eps, no random start, each image's highest-loss iterate, attack in eval
mode) before the update. The output directory holds ``last_checkpoint.pth`` (every epoch, for
``--resume``), ``model_final.pth`` (an rdet checkpoint that the backbone registry, ``rdet.classify``
and ``tools/convert_backbone.py`` read), TensorBoard events and ``result.json``.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Dict, Optional

import torch

from rdet.core.atomic import torch_save
from rdet.attacks import make_perturb
from rdet.backbones import create_classifier
from rdet.backbones.checkpoint import classifier_checkpoint
from rdet.data.build import datasets_from_cfg
from rdet.engine import FINAL, apply_bn_mode, build_loader, evaluate, prepare_bn, setup_runtime
from rdet.engine.hooks import OverfitGuard
from rdet.engine.optim import describe as describe_recipe, recipe_note
from rdet.engine.rundir import RunDir
from rdet.engine.streams import SeededItems, guard_generator, stratified_indices
from rdet.data.classification import targets_of
from rdet.engine.steps import build_train_step, check_adv_cfg, method_meta, passes_and_schedule
from rdet.core.records import write_record
from rdet.tasks.checks import check_training_inputs

from rdet.data.transforms import preprocessing_from_cfg

logger = logging.getLogger(__name__)


def _guard_hook(cfg, model, train_ds, rt) -> Optional[OverfitGuard]:
    """The catastrophic-overfitting guard (rule and how it differs from Wong et al.'s:
    :class:`rdet.engine.hooks.OverfitGuard`): PGD-GUARD_STEPS accuracy on GUARD_SAMPLES training
    images taken from every class in turn, in an order drawn from SEED (an ImageFolder lists its
    images class by class, so its first images would be one class), each seen through the
    training transform once under its own seed and kept. The PGD start draws from the guard's own
    generator, the same start at every measurement, and the global generators (CPU and CUDA) are
    left as they were found."""
    adv = cfg.ADV
    if float(adv.EPS) == 0 or adv.GUARD == "off" or (adv.GUARD == "auto" and adv.METHOD == "pgd"):
        return None
    indices = stratified_indices(targets_of(train_ds), min(adv.GUARD_SAMPLES, len(train_ds)), cfg.SEED)
    items = SeededItems(train_ds)
    batch = [items[(i, (cfg.SEED, "guard", 0))] for i in indices]  # seeded per image; the run's RNG untouched
    x, y = rt.inputs(torch.stack([b[0] for b in batch])), torch.tensor([b[1] for b in batch], device=rt.device)
    n = len(indices)
    cuda = [rt.device] if rt.device.type == "cuda" else []

    def measure() -> float:
        attack = make_perturb(float(adv.EPS), adv.NORM, adv.GUARD_STEPS, rand_init=True, autocast=rt.autocast,
                              generator=guard_generator(cfg.SEED, rt.device))
        with torch.random.fork_rng(devices=cuda):  # nothing in it may draw from them; kept as found regardless
            model.eval()
            with torch.no_grad(), rt.autocast():
                correct = (model(attack(model, x, y)).argmax(1) == y).sum().double()
        # every process must take the same stop decision: average the processes' measurements
        total = rt.all_reduce(torch.stack([correct, torch.tensor(float(n), dtype=torch.float64, device=rt.device)]))
        return float(100 * total[0] / total[1])

    hook = OverfitGuard(measure, adv.GUARD_MARGIN)
    hook.batch_indices, hook.batch_labels = indices, y.tolist()  # what it measures on, for the record and tests
    return hook


def run(cfg, resume: bool = False) -> Dict[str, Any]:
    """Train, checkpoint every epoch, evaluate clean and PGD accuracy, write the result record."""
    check_adv_cfg(cfg.ADV)
    check_training_inputs(cfg)
    rt = setup_runtime(cfg)
    torch.manual_seed(cfg.SEED)
    out = Path(cfg.OUTPUT_DIR)
    train_ds, test_ds, num_classes, note = datasets_from_cfg(cfg)
    # MODEL.WEIGHTS: start from a checkpoint (continue or fine-tune) instead of random init.
    model = create_classifier(cfg.MODEL.ARCH, num_classes, weights=cfg.MODEL.WEIGHTS or None,
                              allow_pickle=cfg.MODEL.ALLOW_PICKLE)
    model = rt.prepare(prepare_bn(model, cfg.MODEL.BN, rt))
    ddp = rt.wrap_ddp(model)
    if recipe_note(cfg, model.spec):
        logger.warning(recipe_note(cfg, model.spec))
    eps, how = float(cfg.ADV.EPS), method_meta(cfg.ADV)
    meta = {"arch": cfg.MODEL.ARCH, "norm": cfg.ADV.NORM if eps else None, "eps": eps, **how,
            "dataset": cfg.DATA.DATASET, "classes": list(cfg.DATA.CLASSES), "mean": list(model.spec.mean),
            "std": list(model.spec.std), "input_size": cfg.DATA.TRAIN_SIZE}
    passes, _ = passes_and_schedule(cfg.ADV, cfg.SOLVER.EPOCHS)
    train_loader = build_loader(train_ds, cfg, rt, train=True, seed=cfg.SEED)
    test_loader = build_loader(test_ds, cfg, rt, train=False)

    def train_mode(m):
        m.train()
        apply_bn_mode(m, cfg.MODEL.BN)

    with RunDir(cfg, rt, resume) as rundir:
        guard = _guard_hook(cfg, model, train_ds, rt)
        trainer = rundir.build_trainer(model, model.parameters(), train_loader, build_train_step(cfg.ADV, rt.autocast),
                                       passes, ddp=ddp, train_mode=train_mode,
                                       total_steps=cfg.SOLVER.EPOCHS * len(train_loader),
                                       weights=lambda: classifier_checkpoint(model, dict(meta, epoch=trainer.epoch)),
                                       measure_hooks=[guard] if guard else [], desc="pretrain", cfg=cfg)
        kind = (f"adversarial ({how['method']}, {cfg.ADV.NORM}, eps={eps:g})" if eps else "standard")
        logger.info("pretrain %s: %s on %s; passes %d..%d of %d", cfg.MODEL.ARCH, kind, note, trainer.start_epoch + 1,
                    passes, passes)
        trainer.train()
        clean = evaluate(model, test_loader, rt, num_classes)
        robust = None
        if eps > 0:
            attack = make_perturb(eps, cfg.ADV.NORM, cfg.ADV.EVAL_STEPS, rand_init=True, autocast=rt.autocast)
            robust = evaluate(model, test_loader, rt, num_classes, perturb=attack)["top1"]
        guard_info = guard.summary() if guard else None
        # whose weights model_final holds: the best epoch's after the guard fired, else the last one's
        weights_epoch = guard.weights_epoch() if guard else trainer.epoch + 1
        record = {"task": "pretrain", "dataset": cfg.DATA.DATASET, "data_note": note,
                  "backbone": {"arch": cfg.MODEL.ARCH, "norm": meta["norm"], "eps": eps, "method": how["method"],
                               "source": str(out / FINAL)},
                  "training": how, "metric": "top1", "value": clean["top1"], "robust_top1": robust,
                  "robust_attack": f"PGD-{cfg.ADV.EVAL_STEPS} {cfg.ADV.NORM} eps={eps:g}" if eps else None,
                  "epochs": cfg.SOLVER.EPOCHS, "passes": passes, "epochs_run": trainer.epoch + 1,
                  "train_size": cfg.DATA.TRAIN_SIZE,  # input scale: the report tells experiments apart by it
                  "preprocessing": preprocessing_from_cfg(cfg).record(),  # test images' resize, crop, interpolation
                  "overfit_guard": guard_info, "stopped": trainer.stop_reason, "weights_epoch": weights_epoch,
                  "lr": cfg.SOLVER.BASE_LR, "seed": cfg.SEED,
                  "recipe": describe_recipe(cfg),  # which optimizer recipe ran, with its settings
                  "amp": cfg.RUNTIME.AMP, "world_size": rt.world_size, "wall_time_s": rundir.elapsed(),
                  "train_time_s": trainer.history.get("train_time_s", 0.0),
                  "checkpoint": str(out / FINAL)}
        if rt.is_main:
            torch_save(classifier_checkpoint(model, dict(meta, epoch=trainer.epoch, weights_epoch=weights_epoch,
                                                                     overfit_guard=guard_info)),
                       out / FINAL)
            write_record(out, record)
    return record
