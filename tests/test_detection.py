"""Detection through rdet: Faster/Mask R-CNN FPN and Faster R-CNN C4 train a few iterations from
converted backbones on the composed offline set; both evaluators produce AP; --resume continues
a killed run; --num-gpus 2 runs two gloo processes on CPU; bad input fails in one line."""
import json
import math
import os
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import torch

from rdet.backbones import get_spec
from rdet.convert import convert_to_detectron2

ROOT = Path(__file__).resolve().parents[1]
DEMO = str(ROOT / "configs" / "demo_mask_r18_fpn.yaml")
TOOL = str(ROOT / "tools" / "train_det.py")
# Tiny but real: 64 px images, batch 1, a handful of iterations.
FAST = ["INPUT.MIN_SIZE_TRAIN", "(64,)", "INPUT.MAX_SIZE_TRAIN", "64", "INPUT.MIN_SIZE_TEST", "64",
        "INPUT.MAX_SIZE_TEST", "64", "SOLVER.IMS_PER_BATCH", "1", "SOLVER.WARMUP_ITERS", "1", "SOLVER.STEPS", "()",
        "SOLVER.BASE_LR", "0.005", "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", "32", "MODEL.RPN.POST_NMS_TOPK_TRAIN", "64",
        "MODEL.RPN.POST_NMS_TOPK_TEST", "50", "TEST.DETECTIONS_PER_IMAGE", "10", "DATALOADER.NUM_WORKERS", "0",
        # An untrained detector's scores may all be under the default 0.05: keep every box so AP is a
        # number (possibly 0) rather than NaN; fixed seed (detectron2's default SEED -1 is random).
        "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0", "SEED", "0"]


def _convert(tmp, arch):
    torch.manual_seed(0)
    sd = get_spec(arch).builder(10).state_dict()
    torch.save({"model": sd, "rdet": {"arch": arch, "norm": "l2", "eps": 0.5}}, tmp / f"{arch}.pth")
    return convert_to_detectron2(tmp / f"{arch}.pth", tmp / f"{arch}.pkl", verify=False).weights


@pytest.fixture(scope="module")
def backbones(tmp_path_factory, fashion_mnist_root):
    tmp = tmp_path_factory.mktemp("d2w")
    return {"r18": _convert(tmp, "resnet18"), "r50": _convert(tmp, "resnet50")}


def _run(config, opts, **kw):
    from rdet.detection import run

    return run(config, opts, **kw)


def _losses(out):
    lines = [json.loads(x) for x in (Path(out) / "metrics.json").read_text().splitlines() if x.strip()]
    return [x["total_loss"] for x in lines if "total_loss" in x]


@pytest.fixture(scope="module")
def faster_fpn(tmp_path_factory, backbones):
    out = tmp_path_factory.mktemp("faster_fpn")
    rec = _run(DEMO, FAST + ["MODEL.MASK_ON", "False", "SOLVER.MAX_ITER", "4", "SOLVER.CHECKPOINT_PERIOD", "100",
                             "MODEL.WEIGHTS", str(backbones["r18"]), "OUTPUT_DIR", str(out)])
    return rec, out


def test_faster_rcnn_fpn_trains_and_evaluates(faster_fpn, backbones):
    import pickle

    rec, out = faster_fpn
    assert rec["box_AP"] is not None and rec["mask_AP"] is None and rec["iterations"] == 4
    assert rec["backbone"]["arch"] == "resnet18" and rec["backbone"]["eps"] == 0.5
    assert all(math.isfinite(x) for x in _losses(out))
    final = torch.load(out / "model_final.pth", weights_only=False)["model"]
    with open(backbones["r18"], "rb") as f:
        start = pickle.load(f)["model"]
    name = "res4.0.conv1.weight"
    assert not np.array_equal(final[f"backbone.bottom_up.{name}"].numpy(), start[name])  # it trained
    assert json.loads((out / "result.json").read_text())["box_AP"] == rec["box_AP"]


def test_mask_rcnn_fpn(tmp_path, backbones):
    rec = _run(DEMO, FAST + ["SOLVER.MAX_ITER", "3", "MODEL.WEIGHTS", str(backbones["r18"]), "OUTPUT_DIR",
                             str(tmp_path)])
    assert rec["mask_AP"] is not None and rec["detection_task"] == "instance_segmentation"
    assert all(math.isfinite(x) for x in _losses(tmp_path)) and (tmp_path / "model_final.pth").is_file()


def test_faster_rcnn_c4(tmp_path, backbones):
    rec = _run(str(ROOT / "configs" / "voc_r50_c4.yaml"),
               FAST + ["DATASETS.TRAIN", "('rdet_fashion_det_train',)", "DATASETS.TEST", "('rdet_fashion_det_val',)",
                       "MODEL.ROI_HEADS.NUM_CLASSES", "5", "INPUT.MASK_FORMAT", "bitmask", "SOLVER.MAX_ITER", "2",
                       "MODEL.WEIGHTS", str(backbones["r50"]), "OUTPUT_DIR", str(tmp_path)])
    # 2 iterations at 64 px: the evaluator runs, but the C4 model may not output a box yet (AP None)
    assert rec["meta_architecture"].endswith("Res5ROIHeads") and "box_AP" in rec
    assert all(math.isfinite(x) for x in _losses(tmp_path)) and (tmp_path / "model_final.pth").is_file()
    assert (tmp_path / "inference" / "rdet_fashion_det_val" / "instances_predictions.pth").is_file()


def _write_voc(root: Path, n: int = 6):
    """A VOC2007-layout folder made from the composed set's validation images."""
    from detectron2.data import DatasetCatalog, MetadataCatalog

    dicts = DatasetCatalog.get("rdet_fashion_det_val")[:n]
    classes = MetadataCatalog.get("rdet_fashion_det_val").thing_classes
    for sub in ("Annotations", "ImageSets/Main", "JPEGImages"):
        (root / sub).mkdir(parents=True)
    ids = []
    for d in dicts:
        stem = Path(d["file_name"]).stem
        ids.append(stem)
        (root / "JPEGImages" / f"{stem}.jpg").write_bytes(Path(d["file_name"]).read_bytes())
        ann = ET.Element("annotation")
        size = ET.SubElement(ann, "size")
        for k, v in (("width", d["width"]), ("height", d["height"]), ("depth", 3)):
            ET.SubElement(size, k).text = str(v)
        for a in d["annotations"]:
            obj = ET.SubElement(ann, "object")
            ET.SubElement(obj, "name").text = classes[a["category_id"]]
            ET.SubElement(obj, "difficult").text = "0"
            ET.SubElement(obj, "pose").text = "Unspecified"
            ET.SubElement(obj, "truncated").text = "0"
            box = ET.SubElement(obj, "bndbox")
            x, y, w, h = a["bbox"]
            for k, v in (("xmin", x + 1), ("ymin", y + 1), ("xmax", x + w), ("ymax", y + h)):
                ET.SubElement(box, k).text = str(int(round(v)))
        ET.ElementTree(ann).write(root / "Annotations" / f"{stem}.xml")
    (root / "ImageSets" / "Main" / "test.txt").write_text("\n".join(ids) + "\n")
    return classes


def test_pascal_voc_evaluator(tmp_path, faster_fpn):
    from detectron2.data import DatasetCatalog, MetadataCatalog
    from detectron2.data.datasets import register_pascal_voc

    from rdet.detection.datasets import register_demo_dataset

    register_demo_dataset()
    classes = _write_voc(tmp_path / "VOC2007")
    if "rdet_test_voc" not in DatasetCatalog.list():
        register_pascal_voc("rdet_test_voc", str(tmp_path / "VOC2007"), "test", 2007, class_names=classes)
        MetadataCatalog.get("rdet_test_voc").evaluator_type = "pascal_voc"  # as detectron2's builtin VOC sets it
    _, out = faster_fpn
    rec = _run(DEMO, FAST + ["MODEL.MASK_ON", "False", "DATASETS.TEST", "('rdet_test_voc',)", "MODEL.WEIGHTS",
                             str(out / "model_final.pth"), "OUTPUT_DIR", str(tmp_path / "eval")], eval_only=True)
    assert rec["box_AP"] is not None and rec["box_AP50"] is not None and 0 <= rec["box_AP50"] <= 100


def _cli(args, env_root, **kw):
    env = dict(os.environ, RDET_DATASETS=str(env_root))
    return subprocess.run([sys.executable, TOOL, *args], capture_output=True, text=True, env=env, timeout=600, **kw)


@pytest.mark.timeout(600)
def test_resume_after_kill(tmp_path, backbones, data_root):
    out = tmp_path / "run"
    args = ["--config-file", DEMO, *FAST, "MODEL.MASK_ON", "False", "SOLVER.MAX_ITER", "8", "SOLVER.CHECKPOINT_PERIOD",
            "2", "MODEL.WEIGHTS", str(backbones["r18"]), "OUTPUT_DIR", str(out), "DATASETS.TEST", "()"]
    env = dict(os.environ, RDET_DATASETS=str(data_root))
    proc = subprocess.Popen([sys.executable, TOOL, *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=env, start_new_session=True)
    deadline = time.time() + 300
    tag = out / "last_checkpoint"  # detectron2 points at the newest checkpoint once it is complete
    while not (tag.exists() and "model_0000003" in tag.read_text()) and time.time() < deadline \
            and proc.poll() is None:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert (out / "model_0000003.pth").exists() and not (out / "model_final.pth").exists()
    res = _cli(["--resume", *args], data_root)
    assert res.returncode == 0, res.stderr[-2000:]
    started = [int(x.split("iteration")[1].split()[0]) for x in (res.stdout + res.stderr).splitlines()
               if "Starting training from iteration" in x]
    assert started and started[0] >= 4, started
    assert (out / "model_final.pth").is_file()


@pytest.mark.timeout(600)
def test_two_processes_on_cpu(tmp_path, backbones, data_root):
    res = _cli(["--num-gpus", "2", "--config-file", DEMO, *FAST, "MODEL.MASK_ON", "False", "SOLVER.IMS_PER_BATCH", "2",
                "SOLVER.MAX_ITER", "2", "MODEL.WEIGHTS", str(backbones["r18"]), "OUTPUT_DIR", str(tmp_path),
                "DATASETS.TEST", "()"], data_root)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "world size: 2" in (res.stdout + res.stderr).lower() or (tmp_path / "model_final.pth").is_file()
    assert (tmp_path / "model_final.pth").is_file() and (tmp_path / "result.json").is_file()


@pytest.mark.parametrize("case", ["config", "override", "weights", "dataset"])
def test_bad_inputs(tmp_path, backbones, data_root, case):
    out = tmp_path / "o"
    base = ["--config-file", DEMO, "MODEL.WEIGHTS", str(backbones["r18"]), "OUTPUT_DIR", str(out)]
    args, match, env_extra = {
        "config": (["--config-file", str(tmp_path / "nope.yaml")], "no such config file", {}),
        "override": (base + ["SOLVER.NOT_A_KEY", "1"], "SOLVER.NOT_A_KEY", {}),
        "weights": (base[:2] + ["MODEL.WEIGHTS", str(tmp_path / "none.pkl")], "no such file", {}),
        "dataset": (base + ["DATASETS.TRAIN", "('coco_2017_train',)"], "coco", {}),
    }[case]
    env = dict(os.environ, RDET_DATASETS=str(data_root), DETECTRON2_DATASETS=str(tmp_path / "nodata"))
    res = subprocess.run([sys.executable, TOOL, *args], capture_output=True, text=True, env=env, timeout=300)
    err = [x for x in res.stderr.strip().splitlines() if x.startswith("error:")]
    assert res.returncode == 2 and len(err) == 1 and match in err[0], res.stderr[-1500:]
    assert not out.exists()
