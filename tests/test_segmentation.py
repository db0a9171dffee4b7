"""Semantic segmentation through tools/train_det.py (slow: detectron2 training, a few iterations
each, on small folders in the real layouts): Semantic FPN on the composed offline set (data-loader
workers on) and --eval-only of what it wrote; UperNet R50 / ConvNeXt / Swin and Semantic FPN on
a ViT on an ADEChallengeData2016 folder; DeepLabV3+ R50 on a Cityscapes folder (train ids made
with cityscapesscripts) and on a VOC 2012 folder with palette PNGs; two gloo processes train and
evaluate to one record; a killed run resumes from its last checkpoint."""
from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from test_segmentation_checks import write_ade, write_cityscapes, write_voc

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"
TOOL = str(ROOT / "tools" / "train_det.py")
DEMO = str(CONFIGS / "demo_sem_r18_fpn.yaml")
# 64-px crops, 2 images a batch, 2-3 iterations: the whole path, in seconds.
SMALL = ["INPUT.MIN_SIZE_TRAIN", "(64,)", "INPUT.MAX_SIZE_TRAIN", "128", "INPUT.MIN_SIZE_TEST", "64",
         "INPUT.MAX_SIZE_TEST", "128", "INPUT.CROP.SIZE", "(64, 64)", "SOLVER.IMS_PER_BATCH", "2",
         "SOLVER.MAX_ITER", "2", "SOLVER.WARMUP_ITERS", "0", "SEED", "0", "DATALOADER.NUM_WORKERS", "0"]


# Semantic FPN R18 on the small ADE20K folder (2 validation images): for the runs in subprocesses
ADE_R18 = ["--config-file", str(CONFIGS / "ade20k_sem_r50_fpn_80k.yaml"), *SMALL, "MODEL.RESNETS.DEPTH", "18",
           "MODEL.RESNETS.RES2_OUT_CHANNELS", "64"]


def _convert_resnet(tmp: Path, arch: str) -> Path:
    from rdet.backbones import get_spec
    from rdet.convert import convert_to_detectron2

    torch.manual_seed(0)
    net = get_spec(arch).builder(10)
    torch.save({"model": net.state_dict(), "rdet": {"arch": arch, "norm": "l2", "eps": 3.0, "method": "pgd"}},
               tmp / f"{arch}.pth")
    return convert_to_detectron2(tmp / f"{arch}.pth", tmp / f"{arch}.pkl", verify=False).weights


def _convert_timm(tmp: Path, arch: str) -> Path:
    """A random timm ``arch`` through rdet's converter (its feature check is tests/test_detection_timm's)."""
    from rdet.backbones import get_spec
    from rdet.convert import convert_to_detectron2

    torch.manual_seed(0)
    sd = {k: (1.0 + 0.1 * torch.randn_like(v) if "norm" in k and k.endswith("weight") else 0.05 * torch.randn_like(v))
          if v.is_floating_point() else v for k, v in get_spec(arch).builder(1000).state_dict().items()}
    torch.save(sd, tmp / f"{arch}.pth")
    return convert_to_detectron2(tmp / f"{arch}.pth", tmp / f"{arch}.pkl", arch=arch, verify=False).weights


@pytest.fixture(scope="module")
def resnets(tmp_path_factory, fashion_mnist_root):
    tmp = tmp_path_factory.mktemp("seg_w")
    return {"r18": _convert_resnet(tmp, "resnet18"), "r50": _convert_resnet(tmp, "resnet50")}


@pytest.fixture(scope="module")
def d2(tmp_path_factory):
    """``$DETECTRON2_DATASETS`` with ADE20K, Cityscapes and VOC 2012 folders, and a fresh cache."""
    root = tmp_path_factory.mktemp("d2")
    write_ade(root)
    write_cityscapes(root)
    write_voc(root)
    old = {k: os.environ.get(k) for k in ("DETECTRON2_DATASETS", "RDET_CACHE")}
    os.environ.update(DETECTRON2_DATASETS=str(root), RDET_CACHE=str(root / "cache"))
    yield root
    for k, v in old.items():
        os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)


def _main(args, capsys):
    from rdet.cli.train_det import main

    code = main([str(a) for a in args])
    out = capsys.readouterr()
    assert code == 0, out.err[-3000:]
    return out.out


def _record(out: Path) -> dict:
    return json.loads((out / "result.json").read_text())


def _losses(out: Path, key: str = "total_loss"):
    lines = [json.loads(x) for x in (out / "metrics.json").read_text().splitlines() if x.strip()]
    return [x[key] for x in lines if key in x]


def _is_pct(v) -> bool:
    return isinstance(v, float) and math.isfinite(v) and 0.0 <= v <= 100.0


def _assert_segmentation_record(rec: dict, classes: int, arch: str, head: str, iterations: int = 2):
    assert rec["task"] == "segmentation" and rec["head"] == head and rec["num_classes"] == classes
    for k in ("mIoU", "fwIoU", "pixel_accuracy", "mACC"):
        assert _is_pct(rec[k]), (k, rec[k])
    assert len(rec["per_class_IoU"]) == classes
    assert all(v is None or _is_pct(v) for v in rec["per_class_IoU"].values())
    assert rec["iterations"] == iterations and rec["backbone"]["arch"] == arch


def test_semantic_fpn_on_the_offline_set_then_eval_only(tmp_path, resnets, d2, capsys):
    out = tmp_path / "demo"
    printed = _main(["--config-file", DEMO, "SOLVER.MAX_ITER", "3", "SOLVER.IMS_PER_BATCH", "2", "SEED", "0",
                     "DATALOADER.NUM_WORKERS", "2", "MODEL.WEIGHTS", resnets["r18"], "OUTPUT_DIR", out], capsys)
    rec = _record(out)
    _assert_segmentation_record(rec, 6, "resnet18", "SemSegFPNHead", iterations=3)
    assert rec["backbone"] == {"arch": "resnet18", "norm": "l2", "eps": 3.0, "method": "pgd",
                               "source": str(Path(resnets["r18"]).with_suffix(".pth"))}
    assert rec["crop_size"] == [96, 96] and rec["schedule"] == "3 iters" and rec["dataset"] == "rdet_fashion_sem_val"
    assert rec["classes"] == ["background", "trouser", "sandal", "sneaker", "bag", "ankle_boot"]
    assert set(rec["per_class_IoU"]) == set(rec["classes"])
    assert "Fashion-MNIST" in rec["data_note"] and f"mIoU {rec['mIoU']:.2f}" in printed
    assert all(math.isfinite(x) for x in _losses(out)) and len(_losses(out)) >= 1
    final = torch.load(out / "model_final.pth", weights_only=True)["model"]
    import pickle

    with open(resnets["r18"], "rb") as f:
        start = pickle.load(f)["model"]
    assert not np.array_equal(final["backbone.bottom_up.res4.0.conv1.weight"].numpy(), start["res4.0.conv1.weight"])
    # the trained model evaluates to the same numbers, and the record names what it was trained from
    _main(["--eval-only", "--config-file", DEMO, "MODEL.WEIGHTS", out / "model_final.pth", "OUTPUT_DIR",
           tmp_path / "eval"], capsys)
    again = _record(tmp_path / "eval")
    assert again["eval_only"] is True and again["mIoU"] == pytest.approx(rec["mIoU"])
    assert again["backbone"] == rec["backbone"] and again["iterations"] == 3


@pytest.mark.parametrize("config,head", [("ade20k_sem_r50_fpn_80k.yaml", "SemSegFPNHead"),
                                         ("ade20k_upernet_r50_160k.yaml", "UperNetHead")])
def test_r50_on_an_ade20k_folder(config, head, tmp_path, resnets, d2, capsys):
    out = tmp_path / "ade"
    _main(["--config-file", CONFIGS / config, *SMALL, "MODEL.WEIGHTS", resnets["r50"], "OUTPUT_DIR", out], capsys)
    rec = _record(out)
    _assert_segmentation_record(rec, 150, "resnet50", head)
    assert rec["crop_size"] == [64, 64] and rec["meta_architecture"] == f"SemanticSegmentor/{head}"
    assert rec["dataset"] == "ade20k_sem_seg_val" and rec["data_note"].startswith("ADE20K")
    aux = _losses(out, "loss_sem_seg_aux")  # UperNet's auxiliary FCN head trains beside the main one
    assert all(math.isfinite(x) and x > 0 for x in aux) and bool(aux) == (head == "UperNetHead")
    assert (d2 / "ADEChallengeData2016" / "annotations_detectron2" / "validation").is_dir()


@pytest.mark.parametrize("config,arch", [("ade20k_upernet_convnext_t_160k.yaml", "convnext_atto"),
                                         ("ade20k_upernet_swin_t_160k.yaml", "swin_tiny"),
                                         ("ade20k_sem_vit_b_sfp_80k.yaml", "vit_tiny")])
def test_timm_backbones_on_an_ade20k_folder(config, arch, tmp_path, d2):
    """UperNet ConvNeXt / Swin and Semantic FPN on a ViT from converted timm weights: the
    converter's .yaml names the FPN builder, which UperNet keeps as MODEL.BOTTOM_UP.FROM."""
    import yaml

    from rdet.detection import run

    pkl = Path(_convert_timm(tmp_path, arch))
    extra = ["MODEL.TIMM.WINDOW_SIZE", "2", "MODEL.TIMM.GLOBAL_BLOCKS", "[]"] if "vit" in arch else []
    rec = run(str(CONFIGS / config), SMALL + extra + ["MODEL.WEIGHTS", str(pkl), "OUTPUT_DIR", str(tmp_path / "o")],
              backbone_config=str(pkl.with_suffix(".yaml")))
    head = "SemSegFPNHead" if "vit" in arch else "UperNetHead"
    _assert_segmentation_record(rec, 150, arch, head)
    built = yaml.safe_load((tmp_path / "o" / "config.yaml").read_text())["MODEL"]
    if head == "UperNetHead":
        assert built["BACKBONE"]["NAME"] == "build_bottom_up_backbone"
        assert built["BOTTOM_UP"]["FROM"] == "build_timm_fpn_backbone" and built["TIMM"]["ARCH"] == arch
    assert all(math.isfinite(x) for x in _losses(tmp_path / "o"))


@pytest.mark.parametrize("family", ["cityscapes", "voc"])
def test_deeplabv3plus_r50_on_cityscapes_and_voc_folders(family, tmp_path, resnets, d2, capsys):
    config = {"cityscapes": "cityscapes_deeplabv3plus_r50_90k.yaml", "voc": "voc_aug_deeplabv3plus_r50.yaml"}[family]
    train = ["DATASETS.TRAIN", "('voc_2012_sem_seg_train',)"] if family == "voc" else []
    out = tmp_path / family
    _main(["--config-file", CONFIGS / config, *SMALL, *train, "MODEL.WEIGHTS", resnets["r50"], "OUTPUT_DIR", out],
          capsys)
    rec = _record(out)
    classes = 19 if family == "cityscapes" else 21
    _assert_segmentation_record(rec, classes, "resnet50", "DeepLabV3PlusHead" if family == "cityscapes"
                                else "DeepLabV3PlusGlobalPoolHead")
    if family == "cityscapes":  # train ids made with cityscapesscripts' table: 19 names, road first
        assert rec["classes"][:2] == ["road", "sidewalk"]
        assert list((d2 / "cityscapes" / "gtFine_trainIds" / "train").rglob("*_gtFine_labelTrainIds.png"))
    else:
        assert rec["classes"][:2] == ["background", "aeroplane"]


def _cli(args, env_extra=None, **kw):
    env = dict(os.environ, **(env_extra or {}))
    return subprocess.run([sys.executable, TOOL, *map(str, args)], capture_output=True, text=True, env=env,
                          timeout=600, **kw)


@pytest.mark.timeout(600)
def test_two_processes_train_and_evaluate_to_one_record(tmp_path, resnets, d2, data_root):
    out = tmp_path / "two"
    res = _cli(["--num-gpus", "2", *ADE_R18, "SOLVER.IMS_PER_BATCH", "4", "DATALOADER.NUM_WORKERS", "1",
                "MODEL.WEIGHTS", resnets["r18"], "OUTPUT_DIR", out])
    assert res.returncode == 0, res.stderr[-3000:]
    assert "Rank of current process: 0. World size: 2" in (out / "log.txt").read_text()
    assert "Rank of current process: 1. World size: 2" in (out / "log.txt.rank1").read_text()
    rec = _record(out)
    _assert_segmentation_record(rec, 150, "resnet18", "SemSegFPNHead")
    # both processes' images are in the one confusion matrix: each validation image predicted once
    preds = json.loads((out / "inference" / "ade20k_sem_seg_val" / "sem_seg_predictions.json").read_text())
    assert len({p["file_name"] for p in preds}) == 2
    assert "mIoU" in res.stdout


@pytest.mark.timeout(600)
def test_a_killed_run_resumes_from_its_last_checkpoint(tmp_path, resnets, d2, data_root):
    out = tmp_path / "run"
    args = [*ADE_R18, "SOLVER.MAX_ITER", "8", "SOLVER.CHECKPOINT_PERIOD", "2", "MODEL.WEIGHTS", str(resnets["r18"]),
            "OUTPUT_DIR", str(out)]
    proc = subprocess.Popen([sys.executable, TOOL, *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    tag, deadline = out / "last_checkpoint", time.time() + 300
    while not (tag.exists() and "model_0000003" in tag.read_text()) and time.time() < deadline \
            and proc.poll() is None:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert (out / "model_0000003.pth").exists() and not (out / "result.json").exists()
    res = _cli(["--resume", *args])
    assert res.returncode == 0, res.stderr[-2000:]
    started = [int(x.split("iteration")[1].split()[0]) for x in (res.stdout + res.stderr).splitlines()
               if "Starting training from iteration" in x]
    assert started and started[0] >= 4, started
    rec = _record(out)
    assert rec["iterations"] == 8 and _is_pct(rec["mIoU"])


@pytest.mark.timeout(600)
def test_a_study_with_standard_and_robust_backbones_segments_and_reports(tmp_path, d2, data_root):
    """Two backbone files (eps 0 and L2 eps 3) -> convert cells -> segmentation cells on the
    offline set, run by the local study runner; the report section shows both and their difference."""
    from rdet.backbones import get_spec
    from rdet.core.records import iter_records
    from rdet.report.segmentation import segmentation_markdown
    from rdet.study import run_study

    for name, eps in (("std", 0.0), ("rob", 3.0)):
        torch.manual_seed(int(eps))
        torch.save({"model": get_spec("resnet18").builder(10).state_dict(),
                    "rdet": {"arch": "resnet18", "norm": "l2", "eps": eps, "method": "pgd" if eps else "standard"}},
                   tmp_path / f"{name}.pth")
    path = tmp_path / "study.yaml"
    path.write_text(f"""
output_dir: {tmp_path / 'out'}
backbones: [{{name: std, weights: {tmp_path / 'std.pth'}}}, {{name: rob, weights: {tmp_path / 'rob.pth'}}}]
segmentation:
  - {{name: fashion_sem, config: {DEMO}, opts: [SOLVER.MAX_ITER, 2, SOLVER.IMS_PER_BATCH, 2, DATALOADER.NUM_WORKERS, 0,
      DATASETS.TEST, "('ade20k_sem_seg_val',)", DATASETS.TRAIN, "('ade20k_sem_seg_train',)",
      MODEL.SEM_SEG_HEAD.NUM_CLASSES, 150, INPUT.MIN_SIZE_TEST, 64, INPUT.CROP.SIZE, "(64, 64)"]}}
""")
    run_study(path, console=False)
    recs = [r for r in iter_records(tmp_path / "out" / "segment") if r.get("task") == "segmentation"]
    assert sorted(r["backbone"]["eps"] for r in recs) == [0.0, 3.0]
    md = segmentation_markdown(recs)
    assert "| resnet18 | 0 (standard) |" in md and "| resnet18 | 3 (l2) | pgd |" in md
    assert "resnet18 3 (l2) pgd - standard: " in md and "(1 seed: no spread)" in md
