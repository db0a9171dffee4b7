"""Semantic segmentation: rdet's training iteration against detectron2's own, and evaluation speed.

Every model is detectron2's ``SemanticSegmentor`` built from the same config (Semantic FPN R18 on
rdet's offline set by default, random weights). rdet's side is what ``tools/train_det.py`` runs:
``SemanticTrainer`` (rdet's semantic mapper, optimizer and poly schedule); detectron2's side is its
plain ``SimpleTrainer`` (its ``build_model`` and ``build_optimizer``, no rdet trainer) on the same
inputs (rdet's mapper): the ratio is rdet's overhead. A third line feeds detectron2's side from its
default ``DatasetMapper``, for reference: that mapper crops before it resizes, so its images differ
in size. Each times ``run_step`` (loading + forward + backward + update) after a warm-up,
interleaved in one process. Evaluation: images/s of
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


def build_trainers(cfg):
    """rdet's SemanticTrainer, and detectron2's plain SimpleTrainer (its build_model and
    build_optimizer) fed by rdet's semantic mapper (the same inputs) and by detectron2's default
    DatasetMapper; one config, one seed."""
    import torch
    from detectron2.data import build_detection_train_loader
    from detectron2.engine import SimpleTrainer
    from detectron2.modeling import build_model
    from detectron2.solver import build_optimizer

    from rdet.detection.semantic import SemanticTrainer, build_semantic_train_loader

    def plain(loader):
        torch.manual_seed(0)
        model = build_model(cfg)
        model.train()
        return SimpleTrainer(model, loader, build_optimizer(cfg, model))

    torch.manual_seed(0)
    ours = SemanticTrainer(cfg)
    return ours, plain(build_semantic_train_loader(cfg)), plain(build_detection_train_loader(cfg))


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

    import torch

    from rdet.detection.train import setup

    with tempfile.TemporaryDirectory() as tmp:
        cfg, _ = setup(args.config, ["MODEL.WEIGHTS", "", "OUTPUT_DIR", tmp, "DATALOADER.NUM_WORKERS", "0",
                                     *args.opts])
        from detectron2.utils.events import EventStorage

        trainers = build_trainers(cfg)
        times = [[] for _ in trainers]
        with EventStorage(0):  # where run_step logs its losses, as in train()
            for t in trainers:
                _steps(t, args.warmup)  # DefaultTrainer.run_step: its SimpleTrainer's step
            for rep in range(args.reps):  # the order rotates, so no side always runs after the same one
                for i in [(rep + k) % len(trainers) for k in range(len(trainers))]:
                    times[i].append(_steps(trainers[i], args.iters))
        trainers[0].model.eval()
        ips = eval_images_per_second(cfg, trainers[0].model)
    ours, theirs, d2_mapper = (min(ts) for ts in times)
    print("ms/iter per rep:", [[round(t * 1000) for t in ts] for ts in times])
    print(f"config {Path(args.config).name}, batch {cfg.SOLVER.IMS_PER_BATCH}, crop {list(cfg.INPUT.CROP.SIZE)}, "
          f"{args.iters} iterations x {args.reps} reps (best), {torch.get_num_threads()} threads")
    print(f"detectron2 SimpleTrainer, rdet's mapper:  {theirs * 1000:.1f} ms/iter")
    print(f"rdet SemanticTrainer (train_det):         {ours * 1000:.1f} ms/iter  ({ours / theirs:.2f}x detectron2)")
    print(f"detectron2 SimpleTrainer + DatasetMapper: {d2_mapper * 1000:.1f} ms/iter  (its own recipe: crops before "
          "resizing, so other image sizes; not the same inputs)")
    print(f"evaluation (SemSegEvaluator, {cfg.DATASETS.TEST[0]}): {ips:.1f} images/s")


if __name__ == "__main__":
    main()
