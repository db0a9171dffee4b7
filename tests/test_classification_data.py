"""The 12 paper datasets, each read through torchvision's class from a small fake copy of its
on-disk layout written here, with rdet's split rules (Table 5) and class counts.

CIFAR and Flowers-102 check the md5 of their archive files; those checks are switched off for the
fakes (the real files pass them)."""
import json
import pickle
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rdet.data.classification import DATASET_CATALOG, build_dataset, get_dataset_entry, targets_of
from rdet.errors import DatasetError


def _jpg(path: Path, value: int = 0):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((6, 6, 3), value % 255, np.uint8)).save(path)


def make_aircraft(root):
    d = root / "fgvc-aircraft-2013b" / "data"
    classes = ["707-320", "A300B4", "Cessna 172"]
    d.mkdir(parents=True)
    (d / "variants.txt").write_text("\n".join(classes) + "\n")
    for split, n in (("trainval", 4), ("test", 2)):
        lines = []
        for c, name in enumerate(classes):
            for i in range(n):
                stem = f"{split}{c}{i:03d}"
                _jpg(d / "images" / f"{stem}.jpg")
                lines.append(f"{stem} {name}")
        (d / f"images_variant_{split}.txt").write_text("\n".join(lines) + "\n")
    return 3, 12, 6


def make_birdsnap(root):
    for split, n in (("train", 3), ("test", 2)):
        for c in ("Acadian_Flycatcher", "Bald_Eagle"):
            for i in range(n):
                _jpg(root / "birdsnap" / split / c / f"{i}.jpg")
    return 2, 6, 4


def _cifar(root, folder, files, meta_name, meta_key, label_key, n_classes):
    d = root / folder
    d.mkdir(parents=True)
    for fname, n in files:
        data = {"data": np.zeros((n, 3072), np.uint8), label_key: [i % n_classes for i in range(n)]}
        (d / fname).write_bytes(pickle.dumps(data))
    (d / meta_name).write_bytes(pickle.dumps({meta_key: [f"c{i}" for i in range(n_classes)]}))


def make_cifar10(root):
    files = [(f"data_batch_{i}", 4) for i in range(1, 6)] + [("test_batch", 6)]
    _cifar(root, "cifar-10-batches-py", files, "batches.meta", "label_names", "labels", 10)
    return 10, 20, 6


def make_cifar100(root):
    _cifar(root, "cifar-100-python", [("train", 20), ("test", 5)], "meta", "fine_label_names", "fine_labels", 100)
    return 100, 20, 5


def make_caltech101(root):
    base = root / "caltech101" / "101_ObjectCategories"
    for c, n in (("BACKGROUND_Google", 5), ("accordion", 33), ("airplanes", 40)):
        for i in range(1, n + 1):
            _jpg(base / c / f"image_{i:04d}.jpg", i)
    return 2, 60, 13  # background dropped; 30 per class to train, the rest to test


def make_caltech256(root):
    base = root / "caltech256" / "256_ObjectCategories"
    for k, (c, n) in enumerate((("001.ak47", 62), ("002.american-flag", 65)), start=1):
        for i in range(1, n + 1):
            _jpg(base / c / f"{k:03d}_{i:04d}.jpg", i)
    return 2, 120, 7  # 60 per class to train


def make_cars(root):
    from scipy.io import savemat

    base = root / "stanford_cars"
    (base / "devkit").mkdir(parents=True)
    savemat(base / "devkit" / "cars_meta.mat", {"class_names": np.array(["AM General Hummer", "Acura RL", "Audi TT"],
                                                                         dtype=object)})
    for split, mat, n in (("cars_train", base / "devkit" / "cars_train_annos.mat", 6),
                          ("cars_test", base / "cars_test_annos_withlabels.mat", 3)):
        recs = np.zeros((n,), dtype=[("fname", "O"), ("class", "O")])
        for i in range(n):
            _jpg(base / split / f"{i:05d}.jpg")
            recs[i] = (f"{i:05d}.jpg", (i % 3) + 1)
        savemat(mat, {"annotations": recs})
    return 3, 6, 3


def make_dtd(root):
    d = root / "dtd" / "dtd"
    classes = ["banded", "blotchy"]
    for split, n in (("train", 2), ("val", 2), ("test", 3)):
        lines = []
        for c in classes:
            for i in range(n):
                name = f"{c}_{split}_{i}.jpg"
                _jpg(d / "images" / c / name)
                lines.append(f"{c}/{name}")
        (d / "labels").mkdir(parents=True, exist_ok=True)
        (d / "labels" / f"{split}1.txt").write_text("\n".join(lines) + "\n")
    return 2, 8, 6  # split 1: train + val for training


def make_flowers(root):
    from scipy.io import savemat

    base = root / "flowers-102"
    n = 12
    for i in range(1, n + 1):
        _jpg(base / "jpg" / f"image_{i:05d}.jpg", i)
    savemat(base / "imagelabels.mat", {"labels": np.array([1 + i % 3 for i in range(n)])})
    savemat(base / "setid.mat", {"trnid": np.arange(1, 4), "valid": np.arange(4, 7), "tstid": np.arange(7, 13)})
    return 3, 6, 6  # train + val for training


def make_food(root):
    base = root / "food-101"
    meta = {"train": {"apple_pie": [], "bibimbap": []}, "test": {"apple_pie": [], "bibimbap": []}}
    for split, n in (("train", 3), ("test", 2)):
        for c in meta[split]:
            for i in range(n):
                rel = f"{c}/{split}{i}"
                _jpg(base / "images" / f"{rel}.jpg")
                meta[split][c].append(rel)
        (base / "meta").mkdir(parents=True, exist_ok=True)
        (base / "meta" / f"{split}.json").write_text(json.dumps(meta[split]))
    return 2, 6, 4


def make_pets(root):
    base = root / "oxford-iiit-pet"
    (base / "annotations").mkdir(parents=True)
    for split, n in (("trainval", 3), ("test", 2)):
        lines = []
        for label, breed in ((1, "Abyssinian"), (2, "american_bulldog")):
            for i in range(n):
                image_id = f"{breed}_{split}{i}"
                _jpg(base / "images" / f"{image_id}.jpg")
                lines.append(f"{image_id} {label} 1 1")
        (base / "annotations" / f"{split}.txt").write_text("\n".join(lines) + "\n")
    return 2, 6, 4


def make_sun397(root):
    base = root / "SUN397"
    base.mkdir(parents=True)
    (base / "ClassName.txt").write_text("/a/abbey\n/b/bakery/shop\n")
    for cls, n in (("a/abbey", 104), ("b/bakery/shop", 101)):
        for i in range(n):
            _jpg(base / cls / f"sun_{i:04d}.jpg", i)
    return 2, 100, 100  # 50 train / 50 test per class


MAKERS = {"aircraft": make_aircraft, "birdsnap": make_birdsnap, "cifar10": make_cifar10, "cifar100": make_cifar100,
          "caltech101": make_caltech101, "caltech256": make_caltech256, "cars": make_cars, "dtd": make_dtd,
          "flowers": make_flowers, "food": make_food, "pets": make_pets, "sun397": make_sun397}


def test_all_twelve_paper_datasets_are_covered():
    from rdet.paper import read_table

    paper = {r["dataset"] for r in read_table("table5")}
    ours = {e.paper_name for e in DATASET_CATALOG.values() if e.paper_name and e.name != "imagenet"}
    assert len(MAKERS) == 12 and ours == {"Aircraft", "Birdsnap", "CIFAR-10", "CIFAR-100", "Caltech-101",
                                          "Caltech-256", "Cars", "DTD", "Flowers", "Food", "Pets", "SUN397"}
    assert ours == paper
    for row in read_table("table5"):  # metric and class count as the paper's Table 5
        e = next(e for e in DATASET_CATALOG.values() if e.paper_name == row["dataset"])
        assert (e.metric, e.num_classes) == (row["metric"], int(row["classes"]))


@pytest.mark.parametrize("name", sorted(MAKERS))
def test_loader_on_fake_layout(tmp_path, monkeypatch, name):
    import torchvision.datasets.cifar as cifar
    import torchvision.datasets.flowers102 as flowers

    monkeypatch.setattr(cifar, "check_integrity", lambda *a, **k: True)
    monkeypatch.setattr(flowers, "check_integrity", lambda *a, **k: True)
    n_classes, n_train, n_test = MAKERS[name](tmp_path)
    train = build_dataset(name, tmp_path, True)
    test = build_dataset(name, tmp_path, False)
    assert (len(train), len(test)) == (n_train, n_test)
    labels = targets_of(train) + targets_of(test)
    assert max(labels) < n_classes
    img, label = train[0]
    assert img.size[0] > 0 and 0 <= label < n_classes
    if name in ("caltech101", "caltech256", "sun397"):  # per-class rule, same split every time
        per_class = {"caltech101": 30, "caltech256": 60, "sun397": 50}[name]
        counts = np.bincount(targets_of(train))
        assert (counts == per_class).all()
        assert targets_of(build_dataset(name, tmp_path, True)) == targets_of(train)
        assert not set(train.indices) & set(test.indices)


@pytest.mark.parametrize("name", sorted(MAKERS))
def test_missing_dataset_names_layout(tmp_path, name):
    with pytest.raises(DatasetError, match="expected") as e:
        build_dataset(name, tmp_path / "empty", True)
    assert get_dataset_entry(name).layout.split("/")[0] in str(e.value)


def test_class_subset_relabels(data_root):
    ds = build_dataset("digits", data_root, True, classes=[7, 3])
    assert sorted(set(targets_of(ds))) == [0, 1] and len(ds) == sum(1 for t in targets_of(
        build_dataset("digits", data_root, True)) if t in (3, 7))
