"""Classification datasets with the paper's splits and metrics (its Table 5), by name.

``DATASET_CATALOG`` maps a name to a :class:`DatasetEntry` whose ``build(root, train, transform)``
returns a map-style dataset of ``(PIL image, label)``. torchvision's own dataset classes do the
reading (``download=False``: rdet never fetches data); rdet adds only the split rules the paper
used where torchvision has none (Caltech-101/256: a fixed number of training images per class;
SUN397: 50/50 per class), seeded so every run sees the same split.
"""
from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

from torch.utils.data import ConcatDataset, Dataset, Subset

from rdet.errors import DatasetError


@dataclass(frozen=True)
class DatasetEntry:
    name: str
    num_classes: int
    metric: str  # "top1" | "mean_per_class"
    layout: str  # what must be under DATA.ROOT, for the error message
    build: Callable[[Path, bool, Optional[Callable]], Dataset]
    paper_name: Optional[str] = None  # name in the paper's tables
    note: str = ""  # what the data is (demo sets say so)


DATASET_CATALOG: Dict[str, DatasetEntry] = {}


def register_dataset(name, num_classes, metric, layout, paper_name=None, note=""):
    def wrap(fn):
        DATASET_CATALOG[name] = DatasetEntry(name, num_classes, metric, layout, fn, paper_name, note)
        return fn
    return wrap


def get_dataset_entry(name: str) -> DatasetEntry:
    if name not in DATASET_CATALOG:
        raise DatasetError(f"unknown dataset {name!r}; choose from: {', '.join(sorted(DATASET_CATALOG))}")
    return DATASET_CATALOG[name]


def build_dataset(name: str, root: Path, train: bool, transform=None, classes: Sequence[int] = ()) -> Dataset:
    """The split of dataset ``name`` under ``root``; :class:`DatasetError` naming the expected
    layout when it is not there. ``classes``: keep these labels only, relabelled 0..K-1."""
    entry = get_dataset_entry(name)
    try:
        ds = entry.build(Path(root), train, transform)
    except (RuntimeError, FileNotFoundError, OSError) as e:
        raise DatasetError(f"{name}: not found under {root} (expected {entry.layout}; rdet never downloads "
                           f"datasets): {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    return select_classes(ds, classes) if classes else ds


class _Relabel(Dataset):
    def __init__(self, ds, indices, mapping):
        self.ds, self.indices, self.mapping = ds, indices, mapping

    def __len__(self):
        return len(self.indices)

    def __getitem__(self, i):
        x, y = self.ds[self.indices[i]]
        return x, self.mapping[y]


def targets_of(ds) -> List[int]:
    """Labels without decoding images, for the dataset classes rdet uses."""
    for attr in ("targets", "_labels", "y", "_samples"):
        if hasattr(ds, attr):
            t = getattr(ds, attr)
            if attr == "_samples":
                return [s[1] for s in t]
            return [int(v) for v in t]
    if isinstance(ds, Subset):
        base = targets_of(ds.dataset)
        return [base[i] for i in ds.indices]
    if isinstance(ds, _Relabel):
        base = targets_of(ds.ds)
        return [ds.mapping[base[i]] for i in ds.indices]
    if isinstance(ds, ConcatDataset):
        return [t for d in ds.datasets for t in targets_of(d)]
    return [int(ds[i][1]) for i in range(len(ds))]


def select_classes(ds, classes: Sequence[int]) -> Dataset:
    mapping = {int(c): i for i, c in enumerate(classes)}
    idx = [i for i, t in enumerate(targets_of(ds)) if t in mapping]
    return _Relabel(ds, idx, mapping)


def per_class_split(targets: Sequence[int], n_train: int, train: bool, seed: int = 0,
                    n_test: Optional[int] = None) -> List[int]:
    """Indices of a seeded split taking ``n_train`` images per class for training and the rest
    (or ``n_test``) for testing; the same for every run."""
    by_class = defaultdict(list)
    for i, t in enumerate(targets):
        by_class[t].append(i)
    rng = random.Random(seed)
    out = []
    for c in sorted(by_class):
        idx = by_class[c][:]
        rng.shuffle(idx)
        tr, te = idx[:n_train], idx[n_train:]
        out += tr if train else (te[:n_test] if n_test else te)
    return sorted(out)


# --- the paper's twelve ---------------------------------------------------------------------
from torchvision import datasets as tvd  # noqa: E402


@register_dataset("aircraft", 100, "mean_per_class", "fgvc-aircraft-2013b/ (torchvision FGVCAircraft)", "Aircraft")
def _aircraft(root, train, tf):
    return tvd.FGVCAircraft(root, split="trainval" if train else "test", annotation_level="variant", transform=tf)


@register_dataset("birdsnap", 500, "top1", "birdsnap/{train,test}/<class>/*.jpg (ImageFolder)", "Birdsnap")
def _birdsnap(root, train, tf):
    return tvd.ImageFolder(root / "birdsnap" / ("train" if train else "test"), transform=tf)


@register_dataset("cifar10", 10, "top1", "cifar-10-batches-py/ (torchvision CIFAR10)", "CIFAR-10")
def _cifar10(root, train, tf):
    return tvd.CIFAR10(root, train=train, transform=tf, download=False)


@register_dataset("cifar100", 100, "top1", "cifar-100-python/ (torchvision CIFAR100)", "CIFAR-100")
def _cifar100(root, train, tf):
    return tvd.CIFAR100(root, train=train, transform=tf, download=False)


@register_dataset("caltech101", 101, "mean_per_class",
                  "caltech101/101_ObjectCategories/<class>/*.jpg (torchvision Caltech101)", "Caltech-101")
def _caltech101(root, train, tf):
    ds = tvd.Caltech101(root, target_type="category", transform=tf, download=False)  # drops BACKGROUND_Google
    return Subset(ds, per_class_split(ds.y, 30, train))


@register_dataset("caltech256", 257, "mean_per_class",
                  "caltech256/256_ObjectCategories/<nnn.class>/*.jpg (torchvision Caltech256)", "Caltech-256")
def _caltech256(root, train, tf):
    ds = tvd.Caltech256(root, transform=tf, download=False)
    return Subset(ds, per_class_split(ds.y, 60, train))


@register_dataset("cars", 196, "top1", "stanford_cars/ (torchvision StanfordCars: devkit, cars_train, cars_test)",
                  "Cars")
def _cars(root, train, tf):
    return tvd.StanfordCars(root, split="train" if train else "test", transform=tf, download=False)


@register_dataset("dtd", 47, "top1", "dtd/dtd/{images,labels} (torchvision DTD)", "DTD")
def _dtd(root, train, tf):
    if train:  # split 1: train + val (3760 images), as the paper's Table 5
        return ConcatDataset([tvd.DTD(root, split=s, partition=1, transform=tf) for s in ("train", "val")])
    return tvd.DTD(root, split="test", partition=1, transform=tf)


@register_dataset("flowers", 102, "mean_per_class", "flowers-102/{jpg,imagelabels.mat,setid.mat} (torchvision Flowers102)",
                  "Flowers")
def _flowers(root, train, tf):
    if train:  # train + val = 2040 images, test 6149 (Table 5)
        return ConcatDataset([tvd.Flowers102(root, split=s, transform=tf) for s in ("train", "val")])
    return tvd.Flowers102(root, split="test", transform=tf)


@register_dataset("food", 101, "top1", "food-101/{images,meta} (torchvision Food101)", "Food")
def _food(root, train, tf):
    return tvd.Food101(root, split="train" if train else "test", transform=tf)


@register_dataset("pets", 37, "mean_per_class", "oxford-iiit-pet/{images,annotations} (torchvision OxfordIIITPet)",
                  "Pets")
def _pets(root, train, tf):
    return tvd.OxfordIIITPet(root, split="trainval" if train else "test", transform=tf)


@register_dataset("sun397", 397, "top1", "SUN397/ClassName.txt + images (torchvision SUN397)", "SUN397")
def _sun397(root, train, tf):
    ds = tvd.SUN397(root, transform=tf)  # torchvision has no split: 50 train / 50 test per class
    return Subset(ds, per_class_split(ds._labels, 50, train, n_test=50))


@register_dataset("imagenet", 1000, "top1", "{train,val}/<wnid>/*.JPEG (ImageNet layout, ImageFolder)", "ImageNet")
def _imagenet(root, train, tf):
    return tvd.ImageFolder(root / ("train" if train else "val"), transform=tf)


@register_dataset("imagefolder", 0, "top1", "{train,test}/<class>/* (ImageFolder)")
def _imagefolder(root, train, tf):
    return tvd.ImageFolder(root / ("train" if train else "test"), transform=tf)


# --- offline sets (rdet.data.offline) --------------------------------------------------------
@register_dataset("fashion_mnist", 10, "top1", "Debian's dataset-fashion-mnist (apt-get install dataset-fashion-mnist)",
                  note="Fashion-MNIST (Zalando, 28x28 greyscale, from Debian's dataset-fashion-mnist)")
def _fashion_mnist(root, train, tf):
    from rdet.data.offline import fashion_mnist

    return fashion_mnist(train, root, transform=tf)


@register_dataset("digits", 10, "top1", "scikit-learn's bundled digits (pip install scikit-learn)",
                  note="scikit-learn's bundled 8x8 handwritten digits (1797 images, fixed 75/25 split)")
def _digits(root, train, tf):
    from rdet.data.offline import digits_dataset

    return digits_dataset(train, transform=tf)


def num_classes_of(name: str, ds: Dataset, classes: Sequence[int] = ()) -> int:
    if classes:
        return len(classes)
    n = get_dataset_entry(name).num_classes
    return n or len(getattr(ds, "classes", [])) or (max(targets_of(ds)) + 1)
