"""The user's design card names three commands; each runs here exactly as the card writes it, from
the checkout's root (the card's relative paths), with only arguments appended:

    python tools/convert_backbone.py …
    python tools/train_det.py --config-file configs/coco_r50_fpn_3x.yaml …
    python -m rdet.classify

The COCO run reads a COCO 2017 folder in detectron2's layout (``$DETECTRON2_DATASETS/coco``) that
the test writes from rdet's composed detection set (real Fashion-MNIST items on real photos) under
COCO's own 80 categories, so detectron2's builtin ``coco_2017_{train,val}`` registrations read it
unchanged. ``python -m rdet.classify``'s offline default is run (shortened) in a folder that holds
no source; the other ``python -m rdet.<command>`` forms are tests/test_packaging.py's."""
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
TINY = ["SOLVER.EPOCHS", "1", "DATA.MAX_TRAIN", "200", "DATA.MAX_TEST", "100"]


def _run(args, cwd, env=None, timeout=600):
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=cwd, timeout=timeout,
                          env={**os.environ, **(env or {})})


def _tiny_coco(root: Path, n_train=4, n_val=4) -> None:
    """``root/coco/{annotations,train2017,val2017}`` from the composed set, its 5 classes as COCO's
    first 5 thing categories (COCO's category list kept whole, as the builtin metadata expects)."""
    from detectron2.data.datasets.builtin_meta import COCO_CATEGORIES

    from rdet.data.offline.detection import detection_split_paths
    from rdet.data.offline import compose_detection_dataset

    src = compose_detection_dataset(None)
    cats = [{"id": c["id"], "name": c["name"], "supercategory": "thing"} for c in COCO_CATEGORIES if c["isthing"]]
    (root / "coco" / "annotations").mkdir(parents=True)
    for split, coco_split, n in (("train", "train2017", n_train), ("val", "val2017", n_val)):
        p = detection_split_paths(src, split)
        data = json.loads(Path(p["json_file"]).read_text())
        own = sorted(c["id"] for c in data["categories"])
        to_coco = {cid: cats[i]["id"] for i, cid in enumerate(own)}
        images = data["images"][:n]
        ids = {im["id"] for im in images}
        anns = [dict(a, category_id=to_coco[a["category_id"]]) for a in data["annotations"] if a["image_id"] in ids]
        (root / "coco" / coco_split).mkdir()
        for im in images:
            shutil.copy(Path(p["image_root"]) / im["file_name"], root / "coco" / coco_split / im["file_name"])
        (root / "coco" / "annotations" / f"instances_{coco_split}.json").write_text(
            json.dumps({"images": images, "annotations": anns, "categories": cats}))


def test_convert_then_train_det_on_coco_3x_as_written(tmp_path, fashion_mnist_root):
    from rdet.backbones import get_spec

    torch.manual_seed(0)
    torch.save({"model": get_spec("resnet50").builder(1000).state_dict(), "rdet": {"arch": "resnet50", "norm": "l2",
                                                                                 "eps": 3.0}}, tmp_path / "r50.pth")
    proc = _run(["tools/convert_backbone.py", str(tmp_path / "r50.pth"), str(tmp_path / "r50.pkl")], cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert (tmp_path / "r50.pkl").is_file() and (tmp_path / "r50.yaml").is_file()

    _tiny_coco(tmp_path / "d2")
    out = tmp_path / "coco_3x"
    proc = _run(["tools/train_det.py", "--config-file", "configs/coco_r50_fpn_3x.yaml",
                 "MODEL.WEIGHTS", str(tmp_path / "r50.pkl"), "OUTPUT_DIR", str(out), "SOLVER.MAX_ITER", "2",
                 "SOLVER.IMS_PER_BATCH", "2", "SOLVER.WARMUP_ITERS", "1", "INPUT.MIN_SIZE_TRAIN", "(64,)",
                 "INPUT.MAX_SIZE_TRAIN", "64", "INPUT.MIN_SIZE_TEST", "64", "INPUT.MAX_SIZE_TEST", "64",
                 "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0", "DATALOADER.NUM_WORKERS", "2", "SEED", "0"],
                cwd=ROOT, env={"DETECTRON2_DATASETS": str(tmp_path / "d2")})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rec = json.loads((out / "result.json").read_text())
    assert rec["dataset"] == "coco_2017_val" and rec["train_datasets"] == ["coco_2017_train"]
    assert rec["backbone"]["arch"] == "resnet50" and rec["backbone"]["eps"] == 3.0
    # trained (a random R50's detector proposes nothing yet, so its AP is None: no predictions) and evaluated
    losses = [json.loads(x)["total_loss"] for x in (out / "metrics.json").read_text().splitlines() if "total_loss" in x]
    assert rec["iterations"] == 2 and len(losses) >= 1 and all(math.isfinite(v) for v in losses)
    assert "box_AP" in rec and (out / "inference" / "coco_2017_val" / "coco_instances_results.json").is_file()


@pytest.mark.timeout(600)
def test_python_m_rdet_classify_as_written(tmp_path, fashion_mnist_root):
    """The card's ``python -m rdet.classify`` (its offline default, shortened) from a folder with no
    rdet source."""
    pre = _run(["-m", "rdet.pretrain", *TINY], cwd=tmp_path)
    assert pre.returncode == 0, pre.stdout[-2000:] + pre.stderr[-2000:]
    proc = _run(["-m", "rdet.classify", *TINY], cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    rec = json.loads((tmp_path / "output" / "classify_demo" / "result.json").read_text())
    assert rec["task"] == "classification" and rec["dataset"] == "fashion_mnist" and 0 <= rec["value"] <= 100
    # every other python -m rdet.<command> form: tests/test_packaging.py (a bad flag, one line, exit 2)
