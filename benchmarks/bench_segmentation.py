"""Semantic segmentation: rdet's training iteration against detectron2's own, and evaluation speed.

Both models are detectron2's ``SemanticSegmentor`` built from the same config (Semantic FPN R18 on
rdet's offline set by default, random weights). rdet's side is what ``tools/train_det.py`` runs:
``SemanticTrainer`` (rdet's semantic mapper, optimizer and poly schedule); detectron2's side is its
plain ``SimpleTrainer`` with its default ``DatasetMapper`` train loader and optimizer, no rdet
trainer. Each side times ``run_step`` (loading + forward + backward + update) after a warm-up, the
two interleaved in one process, and the ratio says rdet's overhead. Evaluation: images/s of
``SemSegEvaluator`` over the test set through rdet's test loader (inference + confusion matrix).

    python benchmarks/bench_segmentation.py [--iters 10] [--warmup 3] [--reps 2]
    python benchmarks/bench_segmentation.py --config configs/ade20k_sem_r50_fpn_80k.yaml --iters 10
"""
import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_adv_train import positive_int  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def _steps(trainer, n: int) -> float:
    """Seconds per ``run_step`` of a detectron2 trainer, over ``n`` steps."""
    t = time.perf_counter()
    for _ in range(n):
        trainer.run_step()
    return (time.perf_counter() - t) / n


def build_pair(cfg):
    """(rdet's SemanticTrainer, detectron2's plain SimpleTrainer), from one config and seed."""
    import torch
    from detectron2.data import build_detection_train_loader
    from detectron2.engine import SimpleTrainer
    from detectron2.modeling import build_model
    from detectron2.solver import build_optimizer

    from rdet.detection.semantic import SemanticTrainer

    torch.manual_seed(0)
    ours = SemanticTrainer(cfg)
    torch.manual_seed(0)
    model = build_model(cfg)
    model.train()
    theirs = SimpleTrainer(model, build_detection_train_loader(cfg), build_optimizer(cfg, model))
    return ours, theirs


def eval_images_per_second(cfg, model) -> float:
    from detectron2.evaluation import inference_on_dataset

    from rdet.detection.semantic import SemanticTrainer

    name = cfg.DATASETS.TEST[0]
    loader = SemanticTrainer.build_test_loader(cfg, name)
    evaluator = SemanticTrainer.build_evaluator(cfg, name)
    t = time.perf_counter()
    inference_on_dataset(model, loader, evaluator)
    return len(loader.dataset) / (time.perf_counter() - t)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=str(ROOT / "configs" / "demo_sem_r18_fpn.yaml"),
                   help="a SemanticSegmentor config (default: the offline demo)")
    p.add_argument("--iters", type=positive_int, default=10, help="timed training iterations per side and rep")
    p.add_argument("--warmup", type=positive_int, default=3, help="untimed iterations first")
    p.add_argument("--reps", type=positive_int, default=2, help="interleaved reps; the best of each side counts")
    p.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides")
    args = p.parse_args()

    from rdet.detection.train import setup

    with tempfile.TemporaryDirectory() as tmp:
        cfg, _ = setup(args.config, ["MODEL.WEIGHTS", "", "OUTPUT_DIR", tmp, "DATALOADER.NUM_WORKERS", "0",
                                     *args.opts])
        from detectron2.utils.events import EventStorage

        ours, theirs = build_pair(cfg)
        t_ours, t_theirs = [], []
        with EventStorage(0):  # where run_step logs its losses, as in train()
            _steps(ours, args.warmup)  # DefaultTrainer.run_step: its SimpleTrainer's step
            _steps(theirs, args.warmup)
            for _ in range(args.reps):
                t_ours.append(_steps(ours, args.iters))
                t_theirs.append(_steps(theirs, args.iters))
        ours.model.eval()
        ips = eval_images_per_second(cfg, ours.model)
    a, b = min(t_ours), min(t_theirs)
    print(f"config {Path(args.config).name}, batch {cfg.SOLVER.IMS_PER_BATCH}, crop {list(cfg.INPUT.CROP.SIZE)}, "
          f"{args.iters} iterations x {args.reps} reps (best)")
    print(f"detectron2 SimpleTrainer + DatasetMapper: {b * 1000:.1f} ms/iter")
    print(f"rdet SemanticTrainer (train_det):         {a * 1000:.1f} ms/iter  ({a / b:.2f}x detectron2)")
    print(f"evaluation (SemSegEvaluator, {cfg.DATASETS.TEST[0]}): {ips:.1f} images/s")


if __name__ == "__main__":
    main()
