"""Semantic segmentation without training (rdet.detection.semantic, sem_datasets, upernet): mIoU,
fwIoU and pixel accuracy equal a confusion matrix counted by hand on fixed predictions; each bad
dataset (label value, size, RGB label, split file, class count) is refused in one line with exit
2 and no output folder; ADE20K's detectron2 labels are made once, beside the data or in the cache
when the dataset folder is read-only; UperNet Swin-T / ConvNeXt-T with 150 classes have the
published 60M parameters; every segmentation config builds its model.

Also the writers of small folders in the real layouts (ADE20K, Cityscapes, VOC 2012) that
tests/test_segmentation.py trains on."""
from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"
VOC_PALETTE = [v for c in range(256) for v in ((c * 37) % 256, (c * 91) % 256, (c * 53) % 256)]


# ---- small folders in the layouts people download ---------------------------------------------

def _png(path: Path, values: np.ndarray, palette: bool = False) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    values = np.ascontiguousarray(values.astype(np.uint8))
    if palette:  # a palette PNG as VOC ships them: mode P, the class index in each pixel
        im = Image.frombytes("P", (values.shape[1], values.shape[0]), values.tobytes())
        im.putpalette(VOC_PALETTE)
    else:
        im = Image.fromarray(values)
    im.save(path)


def _jpg(path: Path, h: int, w: int, rng) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)


def write_ade(root: Path, n_train: int = 4, n_val: int = 2, h: int = 72, w: int = 96, seed: int = 0) -> Path:
    """``root/ADEChallengeData2016`` as unpacked: labels 0 (other) .. 150, blocky so they are learnable."""
    rng = np.random.default_rng(seed)
    ade = root / "ADEChallengeData2016"
    for split, n in (("training", n_train), ("validation", n_val)):
        for i in range(n):
            stem = f"ADE_{'train' if split == 'training' else 'val'}_{i + 1:08d}"
            _jpg(ade / "images" / split / f"{stem}.jpg", h, w, rng)
            blocks = rng.integers(0, 151, (h // 8 + 1, w // 8 + 1))
            _png(ade / "annotations" / split / f"{stem}.png", np.kron(blocks, np.ones((8, 8)))[:h, :w])
    return ade


def write_cityscapes(root: Path, seed: int = 0, h: int = 64, w: int = 128) -> Path:
    """``root/cityscapes``: leftImg8bit + gtFine label ids (0..33), two train cities, one val city."""
    rng = np.random.default_rng(seed)
    cs = root / "cityscapes"
    for split, cities in (("train", ("aachen", "bochum")), ("val", ("frankfurt",))):
        for city in cities:
            stem = f"{city}_000000_000019"
            _jpg(cs / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png", h, w, rng)
            _png(cs / "gtFine" / split / city / f"{stem}_gtFine_labelIds.png", rng.integers(0, 34, (h, w)))
    return cs


def write_voc(root: Path, seed: int = 0, h: int = 80, w: int = 96, aug: bool = False) -> Path:
    """``root/VOC2012``: JPEGImages, palette SegmentationClass (21 classes, 255 borders), the
    train / val split files; with ``aug``, index-PNG SegmentationClassAug for every id."""
    rng = np.random.default_rng(seed)
    voc = root / "VOC2012"
    ids = [f"2007_{i:06d}" for i in range(6)]
    for i in ids:
        _jpg(voc / "JPEGImages" / f"{i}.jpg", h, w, rng)
        lab = rng.integers(0, 21, (h, w))
        lab[:2] = 255
        _png(voc / "SegmentationClass" / f"{i}.png", lab, palette=True)
        if aug:
            _png(voc / "SegmentationClassAug" / f"{i}.png", lab)
    sets = voc / "ImageSets" / "Segmentation"
    sets.mkdir(parents=True, exist_ok=True)
    (sets / "train.txt").write_text("\n".join(ids[:4]) + "\n")
    (sets / "val.txt").write_text("\n".join(ids[4:]) + "\n")
    return voc


@pytest.fixture
def d2_datasets(tmp_path, monkeypatch):
    """A fresh ``$DETECTRON2_DATASETS`` and ``$RDET_CACHE`` for one test."""
    monkeypatch.setenv("DETECTRON2_DATASETS", str(tmp_path / "d2"))
    monkeypatch.setenv("RDET_CACHE", str(tmp_path / "cache"))
    (tmp_path / "d2").mkdir()
    return tmp_path / "d2"


# ---- mIoU against a confusion matrix counted by hand -------------------------------------------

def _by_hand(preds, gts, n, ignore):
    """Per class: intersection and union over every valid pixel (gt != ignore), counted with
    plain loops; classes absent from the ground truth are left out of the mean (SemSegEvaluator)."""
    inter, gt_count, pred_count, valid = [0] * n, [0] * n, [0] * n, 0
    for p_img, g_img in zip(preds, gts):
        for p, g in zip(p_img.ravel().tolist(), g_img.ravel().tolist()):
            if g == ignore:
                continue
            valid += 1
            gt_count[g] += 1
            pred_count[p] += 1
            inter[p] += p == g
    iou = {c: inter[c] / (gt_count[c] + pred_count[c] - inter[c]) for c in range(n) if gt_count[c] > 0}
    miou = 100 * sum(iou.values()) / len(iou)
    fw = 100 * sum(iou[c] * gt_count[c] / valid for c in iou)
    pacc = 100 * sum(inter) / valid
    return miou, fw, pacc, {c: 100 * v for c, v in iou.items()}


def test_miou_equals_a_confusion_matrix_counted_by_hand(tmp_path):
    import torch
    from detectron2.data import DatasetCatalog, MetadataCatalog

    from rdet.detection.semantic import build_semantic_evaluator, semantic_metrics
    from rdet.detection.train import build_cfg

    n, ignore, name = 5, 255, "rdet_test_fixed_preds"
    rng = np.random.default_rng(3)
    gts, preds, dicts = [], [], []
    for i in range(3):
        gt = rng.integers(0, 3, (6, 7))  # classes 0..2 in the ground truth; 3 and 4 never
        gt[rng.random((6, 7)) < 0.2] = ignore
        pred = rng.integers(0, 4, (6, 7))  # class 3 predicted though absent: not in the mean
        pred[gt == 1] = 1  # class 1 mostly right
        _png(tmp_path / f"gt{i}.png", gt)
        gts.append(gt)
        preds.append(pred)
        dicts.append({"file_name": f"img{i}.jpg", "sem_seg_file_name": str(tmp_path / f"gt{i}.png")})
    classes = [f"c{k}" for k in range(n)]
    if name in DatasetCatalog.list():
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
    DatasetCatalog.register(name, lambda: dicts)
    MetadataCatalog.get(name).set(stuff_classes=classes, ignore_label=ignore, evaluator_type="sem_seg")
    cfg = build_cfg(str(CONFIGS / "demo_sem_r18_fpn.yaml"), ["OUTPUT_DIR", str(tmp_path / "o"), "DATASETS.TEST",
                                                              f"('{name}',)", "MODEL.SEM_SEG_HEAD.NUM_CLASSES", "5"])
    ev = build_semantic_evaluator(cfg, name)
    ev.reset()
    for d, pred in zip(dicts, preds):
        logits = torch.nn.functional.one_hot(torch.as_tensor(pred), n).permute(2, 0, 1).float()
        ev.process([d], [{"sem_seg": logits}])
    rec = semantic_metrics(cfg, ev.evaluate())
    miou, fw, pacc, iou = _by_hand(preds, gts, n, ignore)
    assert rec["mIoU"] == pytest.approx(miou) and rec["fwIoU"] == pytest.approx(fw)
    assert rec["pixel_accuracy"] == pytest.approx(pacc)
    assert {c: rec["per_class_IoU"][f"c{c}"] for c in iou} == pytest.approx(iou)
    # absent from the ground truth: no IoU (None), whether predicted (c3) or not (c4)
    assert rec["per_class_IoU"]["c3"] is None and rec["per_class_IoU"]["c4"] is None
    assert 0 < miou < 100 and iou[1] > iou[0]  # a real spread, not a degenerate case
    # one case worked out on paper: 2x2, classes {0, 1}, one ignore pixel
    gt, pred = np.array([[0, 1], [1, ignore]]), np.array([[0, 0], [1, 1]])
    # class 0: inter 1, union 2 -> 0.5; class 1: inter 1, union 2 -> 0.5; pixel acc 2/3
    assert _by_hand([pred], [gt], 2, ignore)[:3] == pytest.approx((50.0, 50.0, 200 / 3))


# ---- bad input: one line, exit 2, nothing written ----------------------------------------------

def _main(args, capsys):
    from rdet.cli.train_det import main

    code = main([str(a) for a in args])
    return code, capsys.readouterr().err.strip().splitlines()


def _r18(tmp_path) -> Path:
    """A converted ResNet-18 (random weights): enough for the checks, which run before training."""
    import torch

    from rdet.backbones import get_spec
    from rdet.convert import convert_to_detectron2

    torch.save({"model": get_spec("resnet18").builder(10).state_dict(), "rdet": {"arch": "resnet18"}},
               tmp_path / "r18.pth")
    return convert_to_detectron2(tmp_path / "r18.pth", tmp_path / "r18.pkl", verify=False).weights


@pytest.fixture(scope="module")
def r18(tmp_path_factory):
    return _r18(tmp_path_factory.mktemp("r18"))


def _corrupt(case: str, d2: Path):
    """Write a dataset with one defect; returns (config, extra overrides, words the error names)."""
    ade = str(CONFIGS / "ade20k_sem_r50_fpn_80k.yaml")
    ade_r18 = ["MODEL.RESNETS.DEPTH", "18", "MODEL.RESNETS.RES2_OUT_CHANNELS", "64"]
    voc = ade  # Semantic FPN on a ResNet-18 (DeepLab needs a Bottleneck ResNet) on VOC 2012
    voc_train = ade_r18 + ["DATASETS.TRAIN", "('voc_2012_sem_seg_train',)", "DATASETS.TEST", "('voc_2012_sem_seg_val',)",
                           "MODEL.SEM_SEG_HEAD.NUM_CLASSES", "21"]
    if case == "label_value":
        a = write_ade(d2)
        bad = a / "annotations" / "validation" / "ADE_val_00000002.png"
        lab = np.zeros((72, 96))
        lab[5, 5] = 200
        _png(bad, lab)
        return ade, ade_r18, [str(bad), "label value 200"]
    if case == "size":
        a = write_ade(d2)
        _png(a / "annotations" / "training" / "ADE_train_00000003.png", np.ones((70, 96)))
        return ade, ade_r18, ["ADE_train_00000003.png", "96x70", "96x72"]
    if case == "rgb_label":
        v = write_voc(d2)
        from PIL import Image

        Image.new("RGB", (96, 80), (128, 0, 0)).save(v / "SegmentationClass" / "2007_000004.png")
        return voc, voc_train, ["2007_000004.png", "RGB image", "palette or index PNGs"]
    if case == "split_file":
        v = write_voc(d2)
        (v / "ImageSets" / "Segmentation" / "val.txt").unlink()
        return voc, voc_train, ["split file", "val.txt", "not found"]
    if case == "class_count":
        write_voc(d2)
        return voc, voc_train + ["MODEL.SEM_SEG_HEAD.NUM_CLASSES", "19"], ["NUM_CLASSES 19", "21 classes"]
    if case == "voc_label_value":
        v = write_voc(d2)
        _png(v / "SegmentationClass" / "2007_000001.png", np.full((80, 96), 21), palette=True)
        return voc, voc_train, ["2007_000001.png", "label value 21"]
    raise AssertionError(case)


@pytest.mark.parametrize("case", ["label_value", "size", "rgb_label", "split_file", "class_count",
                                  "voc_label_value"])
def test_bad_datasets_are_one_line_before_any_work(case, d2_datasets, tmp_path, r18, capsys):
    config, extra, words = _corrupt(case, d2_datasets)
    out = tmp_path / "out"
    code, err = _main(["--config-file", config, *extra, "MODEL.WEIGHTS", r18, "OUTPUT_DIR", out], capsys)
    assert code == 2 and len(err) == 1 and err[0].startswith("error: "), err
    assert all(w in err[0] for w in words), err
    assert not out.exists()
    # nothing half-made next to the data either: a split whose labels failed leaves no folder
    # (a split that passed, checked first, is complete and stamped)
    made = d2_datasets / "ADEChallengeData2016" / "annotations_detectron2"
    if made.exists():
        assert all((d / ".rdet_prepared.json").is_file() for d in made.iterdir()), list(made.iterdir())
        assert not (made / ("training" if case == "size" else "validation")).exists()


def test_ade20k_labels_are_made_once_and_in_the_cache_when_the_folder_is_read_only(d2_datasets, monkeypatch):
    from PIL import Image

    import rdet.detection.sem_datasets as sd

    ade = write_ade(d2_datasets, n_train=2, n_val=1)
    raw = np.array(Image.open(ade / "annotations" / "validation" / "ADE_val_00000001.png"))
    made = []
    real_derive = sd._derive
    monkeypatch.setattr(sd, "_derive", lambda *a, **k: made.append(1) or real_derive(*a, **k))
    pairs = sd.dataset_pairs("ade20k_sem_seg_val", sd.dataset_classes("ade20k_sem_seg_val")[0])
    out = np.array(Image.open(pairs[0][1]))
    assert Path(pairs[0][1]).parent == ade / "annotations_detectron2" / "validation"
    np.testing.assert_array_equal(out, np.where(raw == 0, 255, raw.astype(int) - 1))  # detectron2's rule
    mtime = os.stat(pairs[0][1]).st_mtime_ns
    sd.dataset_pairs("ade20k_sem_seg_val", sd.dataset_classes("ade20k_sem_seg_val")[0])
    assert os.stat(pairs[0][1]).st_mtime_ns == mtime  # idempotent: the stamp says it is done

    # a read-only dataset folder: detectron2's labels go to the cache, the folder is untouched
    ro = write_ade(d2_datasets / "ro", n_train=2, n_val=1)
    monkeypatch.setenv("DETECTRON2_DATASETS", str(d2_datasets / "ro"))
    for p in [ro, *ro.rglob("*")]:
        p.chmod(p.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    try:
        if os.geteuid() == 0:  # root writes anywhere: make rdet see the folder as others would
            monkeypatch.setattr(sd, "_writable", lambda folder: not str(folder).startswith(str(ro)))
        before = sorted(str(p) for p in ro.rglob("*"))
        pairs = sd.dataset_pairs("ade20k_sem_seg_train", sd.dataset_classes("ade20k_sem_seg_train")[0])
        assert sorted(str(p) for p in ro.rglob("*")) == before
        assert Path(pairs[0][1]).is_relative_to(Path(os.environ["RDET_CACHE"]))
        assert np.array(Image.open(pairs[0][1])).max() <= 255
    finally:
        for p in [ro, *ro.rglob("*")]:
            p.chmod(p.stat().st_mode | stat.S_IWUSR)


# ---- UperNet: the published size --------------------------------------------------------------

@pytest.mark.parametrize("config,arch", [("ade20k_upernet_swin_t_160k.yaml", "swin_tiny"),
                                         ("ade20k_upernet_convnext_t_160k.yaml", "convnext_tiny")])
def test_upernet_swin_t_and_convnext_t_have_the_published_60m_parameters(config, arch):
    """Swin (Liu et al. 2021, table 3) and ConvNeXt (Liu et al. 2022, table 4) report 60M for
    UperNet-T with 150 classes: mmsegmentation's count of the model it trains, auxiliary FCN head
    included. rdet's count with the auxiliary head is within 2% of it (and the head alone ~0.9M)."""
    from detectron2.modeling import build_model

    from rdet.detection.train import build_cfg

    cfg = build_cfg(str(CONFIGS / config), ["MODEL.DEVICE", "cpu"])
    assert cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES == 150 and cfg.MODEL.UPERNET.AUX_LOSS_WEIGHT == 0.4
    model = build_model(cfg)
    total = sum(p.numel() for p in model.parameters())
    aux = sum(p.numel() for p in model.sem_seg_head.aux.parameters())
    backbone = sum(p.numel() for p in model.backbone.parameters())
    print(f"{arch}: {total / 1e6:.2f}M with the auxiliary head ({aux / 1e6:.2f}M), backbone {backbone / 1e6:.2f}M")
    assert abs(total - 60e6) / 60e6 <= 0.02, total
    assert 0.8e6 < aux < 1.0e6 and 27e6 < backbone < 29e6
    assert set(model.backbone.output_shape()) == {"res2", "res3", "res4", "res5"}


# ---- the study kind and the report section ----------------------------------------------------

def test_segmentation_section_expands_backbone_x_dataset_x_seed(tmp_path):
    from rdet.study import load_study

    path = tmp_path / "s.yaml"
    path.write_text(f"""
output_dir: {tmp_path / 'out'}
backbones: [{{name: std, weights: a.pth}}, {{name: rob, weights: b.pth}}]
detection: [{{name: voc, config: configs/voc_r50_fpn.yaml}}]
segmentation:
  - {{name: ade, config: configs/ade20k_upernet_r50_160k.yaml, seeds: [0, 1]}}
  - {{name: demo, config: configs/demo_sem_r18_fpn.yaml, opts: [SOLVER.MAX_ITER, 5]}}
""")
    study = load_study(path)
    seg = [c for c in study.cells if c.kind == "segment"]
    assert sorted(c.name for c in seg) == ["segment/ade/rob/s0", "segment/ade/rob/s1", "segment/ade/std/s0",
                                           "segment/ade/std/s1", "segment/demo/rob/s0", "segment/demo/std/s0"]
    assert [c.name for c in study.cells].count("convert/std") == 1  # shared with the detection section
    cell = next(c for c in seg if c.name == "segment/demo/std/s0")
    assert cell.deps == ("convert/std",) and cell.params["opts"] == ["SOLVER.MAX_ITER", 5]
    bad = tmp_path / "bad.yaml"
    bad.write_text("backbones: [{name: a, weights: a.pth}]\nsegmentation: [{name: x, config: c.yaml, seeds: 1}]\n")
    from rdet.core.errors import ConfigError

    with pytest.raises(ConfigError, match="seeds must be a list"):
        load_study(bad)


def _rec(eps, seed, miou, iters=160000, source=None):
    return {"task": "segmentation", "dataset": "ade20k_sem_seg_val", "head": "UperNetHead", "crop_size": [512, 512],
            "iterations": iters, "ims_per_batch": 16, "seed": seed, "mIoU": miou, "fwIoU": miou + 20,
            "pixel_accuracy": miou + 35, "eval_only": False, "data_note": "ADE20K (ADEChallengeData2016, 150 classes)",
            "backbone": {"arch": "resnet50", "norm": "l2" if eps else None, "eps": eps, "method": "pgd" if eps else None,
                         "source": source or f"r50_eps{eps}.pkl"}}


def test_report_section_mIoU_robust_minus_standard_and_published_beside_the_same_setting():
    from rdet.report.segmentation import segmentation_markdown

    recs = [_rec(0.0, 0, 40.0), _rec(0.0, 1, 41.0), _rec(3.0, 0, 43.0), _rec(3.0, 1, 44.5),
            _rec(3.0, 0, 10.0, iters=2),  # another setting: a 2-iteration run is not the 160k baseline
            {"task": "detection", "box_AP": 38.5, "backbone": {"source": "r50_eps3.0.pkl"}},
            dict(_rec(3.0, 0, 99.0), eval_only=True),  # an --eval-only record is not a training row
            {"task": "pretrain", "value": 61.5, "backbone": {"source": "r50_eps3.0.pkl"}},  # top-1 of that file
            _rec(3.0, 0, 12.0, iters=3, source="/cache/resnet50_l2_eps3.ckpt")]  # a catalog release's file
    md = segmentation_markdown(recs)
    assert "### ADE20K, UperNet, crop 512x512, 160000 iterations of 16 images" in md
    assert "| resnet50 | 0 (standard) | — | 40.50 [40.00, 41.00] (n=2) seeds 0,1 | 60.50 | 75.50 | 42.05 (mmsegmentation" in md
    assert "| resnet50 | 3 (l2) | pgd | 43.75 [43.00, 44.50] (n=2) seeds 0,1 |" in md
    assert "| 38.50 | 61.50 (pretraining) |" in md  # mIoU beside box AP and top-1 of the same file
    three = md.split(", 3 iterations")[1].split("###")[0]
    assert "| 62.83 (paper, ImageNet) |" in three  # the paper's Table 3 for the catalog release
    assert "| — | — |" in md.split("### ADE20K, UperNet, crop 512x512, 2 iterations")[1]  # neither known
    assert "resnet50 3 (l2) pgd - standard: **+3.25** (n 2 vs 2, spread 1.50 vs 1.00)" in md  # ranges apart
    two = md.split("### ADE20K, UperNet, crop 512x512, 2 iterations")[1].split("###")[0]
    assert "10.00 (n=1)" in two and "| — |" in two and "no arch has both" in two
    assert "99.00" not in md and "Data: ADE20K (ADEChallengeData2016, 150 classes)" in md
    assert "swin_tiny, 512x512, 160k iterations: 44.5 mIoU — Liu et al. 2021" in md  # every baseline, sourced
    assert segmentation_markdown([{"task": "detection", "box_AP": 1.0}]) == ""


def test_voc_train_aug_reads_segmentation_class_aug(d2_datasets):
    """``voc_2012_sem_seg_train_aug``: SBD's index PNGs for every id but val's, or the ids
    ``train_aug.txt`` lists; palette PNGs of ``SegmentationClass`` read as their indices."""
    from PIL import Image

    import rdet.detection.sem_datasets as sd

    voc = write_voc(d2_datasets, aug=True)
    classes = sd.dataset_classes("voc_2012_sem_seg_train_aug")[0]
    pairs = sd.dataset_pairs("voc_2012_sem_seg_train_aug", classes)
    assert [Path(lbl).parent.name for _, lbl in pairs] == ["SegmentationClassAug"] * 4  # 6 ids, 2 in val
    assert {Path(lbl).stem for _, lbl in pairs} == set((voc / "ImageSets/Segmentation/train.txt").read_text().split())
    (voc / "ImageSets" / "Segmentation" / "train_aug.txt").write_text("2007_000000\n2007_000005\n")
    assert [Path(lbl).stem for _, lbl in sd.dataset_pairs("voc_2012_sem_seg_train_aug", classes)] == \
        ["2007_000000", "2007_000005"]
    from rdet.detection.semantic import read_label

    pal = voc / "SegmentationClass" / "2007_000000.png"
    assert Image.open(pal).mode == "P"
    np.testing.assert_array_equal(read_label(str(pal)), read_label(str(voc / "SegmentationClassAug" / "2007_000000.png")))
    assert read_label(str(pal)).max() == 255 and len(classes) == 21


def test_the_semantic_mapper_keeps_palette_indices_and_pads_small_images_to_the_crop(d2_datasets):
    """detectron2's DatasetMapper reads a label as luminance ("L"), which turns VOC's palette
    indices into grey levels; rdet's mapper keeps the stored index, and a resized image smaller
    than the crop comes out at the crop's size, the padding ignored (255)."""
    from detectron2.data import detection_utils

    from rdet.detection.semantic import SemSegMapper, read_label
    from rdet.detection.train import build_cfg

    voc = write_voc(d2_datasets)
    img, lbl = str(voc / "JPEGImages" / "2007_000001.jpg"), str(voc / "SegmentationClass" / "2007_000001.png")
    stored = read_label(lbl)
    assert not np.array_equal(detection_utils.read_image(lbl, "L").squeeze(2), stored)  # what "L" would give
    base = ["MODEL.SEM_SEG_HEAD.NUM_CLASSES", "21", "INPUT.MAX_SIZE_TRAIN", "1000"]
    config = str(CONFIGS / "ade20k_sem_r50_fpn_80k.yaml")
    whole = SemSegMapper(build_cfg(config, base + ["INPUT.MIN_SIZE_TRAIN", "(80,)", "INPUT.CROP.SIZE", "(80, 96)"]))
    out = whole({"file_name": img, "sem_seg_file_name": lbl})["sem_seg"].numpy()
    assert np.array_equal(out, stored) or np.array_equal(out, stored[:, ::-1])  # at most flipped
    small = SemSegMapper(build_cfg(config, base + ["INPUT.MIN_SIZE_TRAIN", "(40,)", "INPUT.CROP.SIZE", "(64, 64)"]))
    d = small({"file_name": img, "sem_seg_file_name": lbl})
    assert tuple(d["image"].shape) == (3, 64, 64) and tuple(d["sem_seg"].shape) == (64, 64)
    seg = d["sem_seg"].numpy()
    assert (seg[40:] == 255).all() and (seg[:, 48:] == 255).all()  # 80x96 -> 40x48, padded to 64x64
    assert set(np.unique(seg[:40, :48])) <= set(range(21)) | {255}
    assert (d["image"][:, 40:] == 0).all() and d["height"] == 80 and d["width"] == 96
