"""Detection through rdet: Faster/Mask R-CNN FPN and Faster R-CNN C4 train a few iterations from
converted backbones on the composed offline set; both evaluators produce AP; --eval-only records
name the backbone; --resume continues a killed run; two processes and two "machines" run with
world size 2; console=False keeps detectron2's log in each run's own log.txt; bad weights, unsafe
pickles and bad input fail in one line before anything is written."""
import json
import math
import os
import pickle
import shutil
import signal
import socket
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import torch

from rank_driver import subprocess_env
from rdet.backbones import get_spec
from rdet.convert import convert_to_detectron2

ROOT = Path(__file__).resolve().parents[1]
DEMO = str(ROOT / "configs" / "demo_mask_r18_fpn.yaml")
TOOL = str(ROOT / "tools" / "train_det.py")
VAL8 = "rdet_test_det_val8"  # the first 8 validation images: evaluation in seconds
# Tiny but real: 64 px images, batch 1, a handful of iterations.
FAST = ["INPUT.MIN_SIZE_TRAIN", "(64,)", "INPUT.MAX_SIZE_TRAIN", "64", "INPUT.MIN_SIZE_TEST", "64",
        "INPUT.MAX_SIZE_TEST", "64", "SOLVER.IMS_PER_BATCH", "1", "SOLVER.WARMUP_ITERS", "1", "SOLVER.STEPS", "()",
        "SOLVER.BASE_LR", "0.005", "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", "32", "MODEL.RPN.POST_NMS_TOPK_TRAIN", "64",
        "MODEL.RPN.POST_NMS_TOPK_TEST", "50", "TEST.DETECTIONS_PER_IMAGE", "10", "DATALOADER.NUM_WORKERS", "0",
        # An untrained detector's scores may all be under the default 0.05: keep every box so AP is a
        # number (possibly 0) rather than NaN; fixed seed (detectron2's default SEED -1 is random).
        "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0", "SEED", "0"]


def _calibration_batch(n=16):
    """The composed set's first ``n`` training images, 64 px, RGB in [0, 1]: n x 3 x 64 x 64."""
    from detectron2.data import DatasetCatalog
    from PIL import Image

    from rdet.detection.datasets import DEMO_TRAIN, register_demo_dataset

    register_demo_dataset()
    files = [d["file_name"] for d in DatasetCatalog.get(DEMO_TRAIN)[:n]]
    return torch.stack([torch.from_numpy(np.asarray(Image.open(f).convert("RGB").resize((64, 64)))).permute(2, 0, 1)
                        for f in files]).float() / 255


def _convert(tmp, arch):
    """A random-init backbone whose BatchNorm statistics are those of its own activations on real
    images (as in a trained network): detectron2 freezes them, and the unit-variance defaults make
    a deep ResNet's features explode (an R50-C4 then predicts no box at all)."""
    torch.manual_seed(0)
    spec = get_spec(arch)
    net = spec.builder(10)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = None  # a plain average over the batch below
    x = (_calibration_batch() - torch.tensor(spec.mean).view(3, 1, 1)) / torch.tensor(spec.std).view(3, 1, 1)
    with torch.no_grad():
        net.train()(x)
    torch.save({"model": net.state_dict(), "rdet": {"arch": arch, "norm": "l2", "eps": 0.5}}, tmp / f"{arch}.pth")
    return convert_to_detectron2(tmp / f"{arch}.pth", tmp / f"{arch}.pkl", verify=False).weights


@pytest.fixture(scope="module")
def backbones(tmp_path_factory, fashion_mnist_root):
    tmp = tmp_path_factory.mktemp("d2w")
    return {"r18": _convert(tmp, "resnet18"), "r50": _convert(tmp, "resnet50")}


@pytest.fixture(scope="module")
def val8(tmp_path_factory, backbones):
    """``VAL8``: a COCO json with the composed set's first 8 validation images, registered."""
    from detectron2.data import DatasetCatalog, MetadataCatalog
    from detectron2.data.datasets import register_coco_instances

    from rdet.detection.datasets import DEMO_VAL, register_demo_dataset

    register_demo_dataset()
    if VAL8 not in DatasetCatalog.list():
        meta = MetadataCatalog.get(DEMO_VAL)
        coco = json.loads(Path(meta.json_file).read_text())
        coco["images"] = coco["images"][:8]
        ids = {im["id"] for im in coco["images"]}
        coco["annotations"] = [a for a in coco["annotations"] if a["image_id"] in ids]
        path = tmp_path_factory.mktemp("val8") / "instances_val8.json"
        path.write_text(json.dumps(coco))
        register_coco_instances(VAL8, {}, str(path), meta.image_root)
    return ["DATASETS.TEST", f"('{VAL8}',)"]


def _run(config, opts, **kw):
    from rdet.detection import run

    return run(config, opts, **kw)


def _losses(out):
    lines = [json.loads(x) for x in (Path(out) / "metrics.json").read_text().splitlines() if x.strip()]
    return [x["total_loss"] for x in lines if "total_loss" in x]


def _is_ap(v):
    return isinstance(v, float) and math.isfinite(v) and 0.0 <= v <= 100.0


@pytest.fixture(scope="module")
def faster_fpn(tmp_path_factory, backbones, val8):
    out = tmp_path_factory.mktemp("faster_fpn")
    rec = _run(DEMO, FAST + val8 + ["MODEL.MASK_ON", "False", "SOLVER.MAX_ITER", "4", "SOLVER.CHECKPOINT_PERIOD",
                                    "100", "MODEL.WEIGHTS", str(backbones["r18"]), "OUTPUT_DIR", str(out)])
    return rec, out


def test_faster_rcnn_fpn_trains_and_evaluates(faster_fpn, backbones):
    rec, out = faster_fpn
    assert _is_ap(rec["box_AP"]) and _is_ap(rec["box_AP50"]) and _is_ap(rec["box_AP75"]), rec
    assert rec["mask_AP"] is None and rec["iterations"] == 4 and rec["eval_only"] is False
    # the config names its schedule demo-300, but 4 iterations ran
    assert rec["schedule"] == "4 iters"
    assert rec["backbone"] == {"arch": "resnet18", "norm": "l2", "eps": 0.5, "method": None,  # not in that file
                               "source": str(Path(backbones["r18"]).with_suffix(".pth"))}
    assert len(_losses(out)) >= 1 and all(math.isfinite(x) for x in _losses(out))
    final = torch.load(out / "model_final.pth", weights_only=True)["model"]
    with open(backbones["r18"], "rb") as f:
        start = pickle.load(f)["model"]
    name = "res4.0.conv1.weight"
    assert not np.array_equal(final[f"backbone.bottom_up.{name}"].numpy(), start[name])  # it trained
    assert json.loads((out / "result.json").read_text()) == rec


def test_schedule_name_follows_the_iterations_run(backbones):
    from rdet.detection.train import build_cfg, make_record

    coco = str(ROOT / "configs" / "coco_r50_fpn_1x.yaml")

    def schedule(config, *opts):
        return make_record(build_cfg(config, list(opts)), {}, 0.0)["schedule"]

    assert schedule(DEMO) == "demo-300"
    assert schedule(coco) == "1x"
    assert schedule(coco, "SOLVER.IMS_PER_BATCH", "8", "SOLVER.MAX_ITER", "180000") == "1x"  # same images seen
    assert schedule(coco, "SOLVER.MAX_ITER", "2000") == "2000 iters"
    assert schedule(coco, "SOLVER.IMS_PER_BATCH", "8") == "90000 iters"


def test_record_names_the_backbones_training_method():
    """The converted backbone's method (pgd, fgsm_rs, free, standard) travels into the detection
    record, beside its arch, norm and eps (it was dropped there)."""
    from rdet.detection.train import build_cfg, make_record

    cfg = build_cfg(DEMO, [])
    cfg.defrost()
    cfg.RDET.BACKBONE.update(ARCH="resnet18", NORM="linf", EPS=4 / 255, METHOD="fgsm_rs", SOURCE="x.pkl")
    assert make_record(cfg, {}, 0.0)["backbone"] == {"arch": "resnet18", "norm": "linf", "eps": 4 / 255,
                                                      "method": "fgsm_rs", "source": "x.pkl"}


def test_mask_rcnn_fpn(tmp_path, backbones, val8):
    rec = _run(DEMO, FAST + val8 + ["SOLVER.MAX_ITER", "3", "MODEL.WEIGHTS", str(backbones["r18"]), "OUTPUT_DIR",
                                    str(tmp_path)])
    assert _is_ap(rec["mask_AP"]) and _is_ap(rec["box_AP"]) and rec["detection_task"] == "instance_segmentation"
    assert all(math.isfinite(x) for x in _losses(tmp_path)) and (tmp_path / "model_final.pth").is_file()


def test_faster_rcnn_c4(tmp_path, backbones, val8):
    rec = _run(str(ROOT / "configs" / "voc_r50_c4.yaml"),
               FAST + val8 + ["DATASETS.TRAIN", "('rdet_fashion_det_train',)", "MODEL.ROI_HEADS.NUM_CLASSES", "5",
                              "INPUT.MASK_FORMAT", "bitmask", "SOLVER.MAX_ITER", "2",
                              "MODEL.RPN.POST_NMS_TOPK_TEST", "10",  # res5 runs per proposal: keep it quick
                              "MODEL.WEIGHTS", str(backbones["r50"]), "OUTPUT_DIR", str(tmp_path)])
    assert rec["meta_architecture"].endswith("Res5ROIHeads") and _is_ap(rec["box_AP"]), rec
    assert all(math.isfinite(x) for x in _losses(tmp_path)) and (tmp_path / "model_final.pth").is_file()
    assert (tmp_path / "inference" / VAL8 / "instances_predictions.pth").is_file()


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


def test_pascal_voc_evaluator_and_eval_only_record(tmp_path, faster_fpn):
    from detectron2.data import DatasetCatalog, MetadataCatalog
    from detectron2.data.datasets import register_pascal_voc

    from rdet.detection.datasets import register_demo_dataset

    register_demo_dataset()
    classes = _write_voc(tmp_path / "VOC2007")
    if "rdet_test_voc" not in DatasetCatalog.list():
        register_pascal_voc("rdet_test_voc", str(tmp_path / "VOC2007"), "test", 2007, class_names=classes)
        MetadataCatalog.get("rdet_test_voc").evaluator_type = "pascal_voc"  # as detectron2's builtin VOC sets it
    trained, out = faster_fpn
    rec = _run(DEMO, FAST + ["MODEL.MASK_ON", "False", "DATASETS.TEST", "('rdet_test_voc',)", "MODEL.WEIGHTS",
                             str(out / "model_final.pth"), "OUTPUT_DIR", str(tmp_path / "eval")], eval_only=True)
    assert _is_ap(rec["box_AP"]) and _is_ap(rec["box_AP50"]), rec
    # the record names the backbone and schedule the evaluated detector was trained with
    assert rec["eval_only"] is True and rec["backbone"] == trained["backbone"]
    assert rec["iterations"] == 4 and rec["schedule"] == "4 iters"


def test_eval_only_provenance_without_result_json(tmp_path, faster_fpn):
    """The checkpoint's folder without result.json: config.yaml's RDET.BACKBONE; without either: None."""
    from rdet.detection.weights import inspect_weights

    _, out = faster_fpn
    (tmp_path / "cfg").mkdir()
    (tmp_path / "bare").mkdir()
    for d in ("cfg", "bare"):
        shutil.copy(out / "model_final.pth", tmp_path / d / "model_final.pth")
    shutil.copy(out / "config.yaml", tmp_path / "cfg" / "config.yaml")
    info = inspect_weights(tmp_path / "cfg" / "model_final.pth")
    assert info.kind == "detector" and info.iterations == 4 and info.schedule == "4 iters"
    assert info.backbone["arch"] == "resnet18" and info.backbone["eps"] == 0.5 and info.backbone["norm"] == "l2"
    bare = inspect_weights(tmp_path / "bare" / "model_final.pth")
    assert bare.backbone == {"arch": None, "norm": None, "eps": None, "method": None, "source": None}


def test_console_false_keeps_each_log_in_its_own_file(tmp_path, backbones, val8, capfd):
    first, second = tmp_path / "first", tmp_path / "second"
    base = FAST + ["MODEL.MASK_ON", "False", "SOLVER.MAX_ITER", "2", "MODEL.WEIGHTS", str(backbones["r18"])]
    _run(DEMO, base + val8 + ["OUTPUT_DIR", str(first)], console=False)
    _run(DEMO, base + ["DATASETS.TEST", "()", "OUTPUT_DIR", str(second)], console=False)
    captured = capfd.readouterr()
    shown = captured.out + captured.err
    logs = {d: (d / "log.txt").read_text() for d in (first, second)}
    for marker in ("Environment info", "Full config saved", "Starting training from iteration", "Model:",
                   "Average Precision", "Loading and preparing results", "iter: 1"):
        assert marker not in shown, (marker, shown[-3000:])
    for d, other in ((first, second), (second, first)):
        assert logs[d].count(f"Full config saved to {d}/config.yaml") == 1
        assert logs[d].count("Starting training from iteration 0") == 1
        assert logs[d].count("Rank of current process: 0. World size: 1") == 1
        assert str(other) not in logs[d]
    # pycocotools' printed summary lands in the log of the run that evaluated
    assert "Average Precision" in logs[first] and "Average Precision" not in logs[second]


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


def _two_process_args(backbones, out):
    return ["--config-file", DEMO, *FAST, "MODEL.MASK_ON", "False", "SOLVER.IMS_PER_BATCH", "2", "SOLVER.MAX_ITER",
            "2", "MODEL.WEIGHTS", str(backbones["r18"]), "OUTPUT_DIR", str(out), "DATASETS.TEST", "()"]


def _assert_world_size_2(out):
    assert "Rank of current process: 0. World size: 2" in (out / "log.txt").read_text()
    assert "Rank of current process: 1. World size: 2" in (out / "log.txt.rank1").read_text()
    assert (out / "model_final.pth").is_file() and (out / "result.json").is_file()


@pytest.mark.timeout(600)
def test_two_processes_on_cpu(tmp_path, backbones, data_root):
    """Two gloo processes, while another program listens on detectron2's default port (one per
    user id: 49152 for root): rdet's default ``--dist-url auto`` takes a free one instead."""
    with socket.socket() as held:
        try:
            held.bind(("127.0.0.1", 2 ** 15 + 2 ** 14 + hash(os.getuid()) % 2 ** 14))
            held.listen()
        except OSError:
            pass  # something holds it already
        res = _cli(["--num-gpus", "2", *_two_process_args(backbones, tmp_path)], data_root)
    assert res.returncode == 0, res.stderr[-3000:]
    _assert_world_size_2(tmp_path)


@pytest.mark.timeout(600)
def test_two_machines_on_localhost(tmp_path, backbones, data_root):
    """detectron2's multi-machine flags: two launchers (one process each) meet at machine 0's address."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, RDET_DATASETS=str(data_root))
    procs = [subprocess.Popen([sys.executable, TOOL, "--num-gpus", "1", "--num-machines", "2", "--machine-rank",
                               str(rank), "--dist-url", f"tcp://127.0.0.1:{port}",
                               *_two_process_args(backbones, tmp_path)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) for rank in (0, 1)]
    outs = [p.communicate(timeout=500) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-2000:] for o in outs]
    _assert_world_size_2(tmp_path)
    assert "box AP" in outs[0][0] and "machine rank 1 done" in outs[1][0]


def _main(args, capsys):
    from rdet.cli.train_det import main

    code = main([str(a) for a in args])
    return code, capsys.readouterr().err.strip().splitlines()


def _bad_weights(tmp, kind, backbones):
    """(MODEL.WEIGHTS file, expected words in the error, extra flags) for a weights file to refuse."""
    r18 = get_spec("resnet18").builder(10).state_dict()
    if kind == "classifier":  # what rdet.pretrain / rdet.classify write
        torch.save({"model": r18, "rdet": {"arch": "resnet18", "eps": 3.0}}, tmp / "model_final.pth")
        return tmp / "model_final.pth", "convert_backbone.py", []
    if kind == "torchvision":
        torch.save(r18, tmp / "r18.pth")
        return tmp / "r18.pth", "no backbone tensors", []
    if kind == "torchvision_pkl":
        with open(tmp / "r18.pkl", "wb") as f:
            pickle.dump({k: v.numpy() for k, v in r18.items()}, f)
        return tmp / "r18.pkl", "convert it first", []
    if kind == "truncated_pkl":
        data = Path(backbones["r18"]).read_bytes()
        (tmp / "t.pkl").write_bytes(data[: len(data) // 2])
        return tmp / "t.pkl", "truncated", []
    if kind == "garbage_pth":
        (tmp / "g.pth").write_bytes(np.random.default_rng(0).bytes(4000))
        return tmp / "g.pth", "not a readable PyTorch checkpoint", []
    if kind == "backbone_for_eval":
        return backbones["r18"], "backbone only", ["--eval-only"]
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["classifier", "torchvision", "torchvision_pkl", "truncated_pkl", "garbage_pth",
                                  "backbone_for_eval"])
def test_weights_detectron2_cannot_use_are_refused(tmp_path, backbones, data_root, capsys, kind):
    weights, words, flags = _bad_weights(tmp_path, kind, backbones)
    out = tmp_path / "out"
    code, err = _main([*flags, "--config-file", DEMO, "MODEL.WEIGHTS", weights, "OUTPUT_DIR", out], capsys)
    assert code == 2 and len(err) == 1 and err[0].startswith("error: ") and words in err[0], err
    assert not out.exists()


class _WritesMarker:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return exec, (f"open({self.marker!r}, 'w').write('ran')",)


@pytest.mark.timeout(300)
@pytest.mark.parametrize("mode", ["train", "eval-only"])
def test_crafted_pickle_never_runs(tmp_path, backbones, data_root, mode):
    marker = tmp_path / "marker"
    evil = tmp_path / "evil.pkl"
    with open(evil, "wb") as f:
        pickle.dump({"__author__": "x", "model": {"stem.conv1.weight": _WritesMarker(marker)}}, f)
    out = tmp_path / "out"
    flags = ["--eval-only"] if mode == "eval-only" else []
    res = _cli([*flags, "--config-file", DEMO, "MODEL.WEIGHTS", str(evil), "OUTPUT_DIR", str(out)], data_root)
    err = res.stderr.strip().splitlines()
    assert res.returncode == 2 and len(err) == 1, res.stderr[-2000:]
    assert "refusing to unpickle builtins.exec" in err[0] and "--allow-pickle" in err[0]
    assert not marker.exists() and not out.exists()
    with open(evil, "rb") as f:  # the file really runs code when unpickled
        pickle.load(f)
    assert marker.read_text() == "ran"


def test_resume_from_a_corrupt_checkpoint_is_refused(tmp_path, backbones, data_root, capsys):
    out = tmp_path / "o"
    out.mkdir()
    (out / "model_0000003.pth").write_bytes(b"PK\x03\x04" + bytes(100))  # a write cut short
    (out / "last_checkpoint").write_text("model_0000003.pth")
    before = sorted(out.iterdir())
    code, err = _main(["--resume", "--config-file", DEMO, "MODEL.WEIGHTS", backbones["r18"], "OUTPUT_DIR", out],
                      capsys)
    assert code == 2 and len(err) == 1 and "--resume checkpoint" in err[0] and "corrupt" in err[0], err
    assert sorted(out.iterdir()) == before


@pytest.mark.parametrize("case", ["config", "malformed_yaml", "override", "rdet_key_rule", "weights",
                                  "dataset", "eval_without_weights", "machines_auto_url"])
def test_bad_inputs(tmp_path, backbones, data_root, capsys, case):
    out = tmp_path / "o"
    base = ["--config-file", DEMO, "MODEL.WEIGHTS", str(backbones["r18"]), "OUTPUT_DIR", str(out)]
    (tmp_path / "bad.yaml").write_text("MODEL: [unclosed\n")
    args, match = {
        "config": (["--config-file", tmp_path / "nope.yaml"], "no such config file"),
        "malformed_yaml": (["--config-file", tmp_path / "bad.yaml"], "bad.yaml"),
        "override": (base + ["SOLVER.NOT_A_KEY", "1"], "SOLVER.NOT_A_KEY"),
        # rdet's own detectron2 keys have their rule in the schema (one spelling with classification);
        # a flag after the overrides is a flag, as in every rdet command
        "rdet_key_rule": (base + ["SOLVER.OPTIMIZER", "AdamW", "--resume"],
                          "SOLVER.OPTIMIZER must be one of sgd, adamw, not 'AdamW'"),
        "weights": (base[:2] + ["MODEL.WEIGHTS", tmp_path / "none.pkl", "OUTPUT_DIR", out], "no such file"),
        "dataset": (base + ["DATASETS.TRAIN", "('coco_2017_train',)"], "coco"),
        "eval_without_weights": (["--eval-only", *base[:2], "MODEL.WEIGHTS", "", "OUTPUT_DIR", out], "MODEL.WEIGHTS"),
        "machines_auto_url": (["--num-machines", "2", "--dist-url", "auto", *base], "--dist-url"),
    }[case]
    code, err = _main(args, capsys)
    assert code == 2 and len(err) == 1 and err[0].startswith("error: ") and match in err[0], err
    assert not out.exists()


_LAUNCHED_WORKER = """
import json, os, sys
from pathlib import Path

import torch
from detectron2.engine import defaults, launch
from detectron2.utils import comm

from rdet.detection.groups import release_process_groups
from rdet.detection.trainer import ddp_on_cpu
from rank_driver import gloo_threads  # tests/ is on PYTHONPATH


def work(out):
    rank = comm.get_rank()
    with ddp_on_cpu():
        model = defaults.create_ddp_model(torch.nn.Linear(4, 2))
    model(torch.randn(3, 4)).sum().backward()
    gathered = comm.all_gather(rank)  # through detectron2's cached gathering group
    holder = {"model": model}
    holder["self"] = holder  # a reference cycle, as a trainer holds its model
    del model, holder
    before = gloo_threads()
    release_process_groups()
    Path(out, f"{rank}.json").write_text(json.dumps({"before": before, "after": gloo_threads(), "gathered": gathered}))


if __name__ == "__main__":
    launch(work, 2, dist_url="auto", args=(sys.argv[1],))
"""


@pytest.mark.timeout(300)
def test_a_launched_worker_joins_its_gloo_threads_before_it_exits(tmp_path):
    """detectron2's ``launch`` never destroys the groups it makes, and its ``comm`` module and
    DDP's import of ``torch.distributed.nn`` keep them alive: a worker exits with gloo's threads
    running, where one can abort it (exit -6) after a successful run. ``release_process_groups``
    (called by ``train_worker`` after the work) frees them all while the interpreter is alive."""
    script = tmp_path / "launched.py"
    script.write_text(_LAUNCHED_WORKER)
    proc = subprocess.run([sys.executable, str(script), str(tmp_path)], capture_output=True, text=True, timeout=240,
                          env=subprocess_env())
    assert proc.returncode == 0, proc.stderr[-3000:]
    for rank in (0, 1):
        seen = json.loads((tmp_path / f"{rank}.json").read_text())
        assert seen["gathered"] == [0, 1]
        assert "pt_gloo_runloop" in seen["before"], seen
        assert seen["after"] == [], seen
