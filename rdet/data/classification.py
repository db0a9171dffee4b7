"""Classification datasets with the paper's splits and metrics (its Table 5), by name.

``DATASET_CATALOG`` maps a name to a :class:`DatasetEntry` whose ``build(root, train, transform)``
returns a map-style dataset of ``(PIL image, label)``. torchvision's own dataset classes do the
reading where they fit (``download=False``: rdet never fetches data); rdet adds what they lack,
following the authors' transfer code (robust-models-transfer ``src/utils/transfer_datasets.py``):

* SUN397: the official partition 1 (``Training_01.txt`` / ``Testing_01.txt``, 50 + 50 per class);
* Caltech-101/256: the first 30 / 60 images of each class in file-name order for training, the
  rest for testing (:func:`first_per_class`);
* Birdsnap: the real download (``species.txt``, ``images.txt``, ``test_images.txt`` and the images
  ``get_birdsnap.py`` fetched into ``download/images/``), missing images skipped and counted.

Every split is a function of the files' names and the dataset's list files only, never of the
order a directory listing returns. CIFAR and Flowers-102 files failing torchvision's md5 check are
named in the error (torchvision only says "not found or corrupted").
"""
from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from PIL import Image
from torch.utils.data import ConcatDataset, Dataset, Subset
from torchvision import datasets as tvd
from torchvision.datasets.folder import default_loader
from torchvision.datasets.utils import check_integrity

from rdet.core.errors import DatasetError, first_line
from rdet.data.torchvision_private import flowers102_files, private_files, private_targets

logger = logging.getLogger(__name__)


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


def paper_name_of(dataset: str) -> Optional[str]:
    """The paper's name of an rdet dataset (None for class subsets and offline sets)."""
    entry = DATASET_CATALOG.get(dataset)
    return entry.paper_name if entry else None


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
                           f"datasets): {first_line(e)}") from None
    return select_classes(ds, classes) if classes else ds


def read_image(path) -> Image.Image:
    """torchvision's loader (RGB PIL image), with a broken file reported as a one-line
    :class:`DatasetError` naming it: the safety net behind the check ``rdet.data.build`` runs
    over every file before training."""
    try:
        return default_loader(path)
    except (OSError, SyntaxError, ValueError) as e:  # PIL's UnidentifiedImageError is an OSError
        raise DatasetError(f"unreadable image {path}: {first_line(e)}") from None


class ImageList(Dataset):
    """Images named by a dataset's own list files: item ``i`` is ``(files[i] as an RGB PIL image,
    transformed; targets[i])``. ``classes``: names in label order; ``missing``: listed images that
    were not on disk and were skipped."""

    def __init__(self, files: List[str], targets: List[int], classes: List[str], transform=None, missing: int = 0):
        self.files, self.targets, self.classes = files, targets, classes
        self.transform, self.missing = transform, missing

    def __len__(self):
        return len(self.files)

    def __getitem__(self, i):
        img = read_image(self.files[i])
        return (self.transform(img) if self.transform else img), self.targets[i]


def _image_list(name: str, folder: Path, items: Sequence[Tuple[str, int]], classes: List[str], tf,
                skip_missing: bool) -> ImageList:
    """An :class:`ImageList` of ``items`` (path relative to ``folder``, label). Absent files are
    skipped, counted and logged once when ``skip_missing`` (Birdsnap: Flickr images disappear),
    else refused."""
    present = [(folder / rel, y) for rel, y in items if (folder / rel).is_file()]
    missing = len(items) - len(present)
    if missing and not skip_missing:
        first = next(folder / rel for rel, _ in items if not (folder / rel).is_file())
        raise DatasetError(f"{name}: {missing} listed images are missing, e.g. {first}")
    if not present:
        raise DatasetError(f"{name}: none of the {len(items)} listed images is under {folder}")
    if missing:
        logger.warning("%s: %d of %d listed images are not under %s; skipped", name, missing, len(items), folder)
    return ImageList([str(p) for p, _ in present], [y for _, y in present], classes, tf, missing)


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
    if hasattr(ds, "targets"):
        return [int(v) for v in ds.targets]
    private = private_targets(ds)
    if private is not None:
        return private
    if hasattr(ds, "y"):  # Caltech101/256
        return [int(v) for v in ds.y]
    if isinstance(ds, Subset):
        base = targets_of(ds.dataset)
        return [base[i] for i in ds.indices]
    if isinstance(ds, _Relabel):
        base = targets_of(ds.ds)
        return [ds.mapping[base[i]] for i in ds.indices]
    if isinstance(ds, ConcatDataset):
        return [t for d in ds.datasets for t in targets_of(d)]
    return [int(ds[i][1]) for i in range(len(ds))]


def classes_of(ds) -> Optional[List[str]]:
    """Class names in label order, where the dataset has them (None for relabelled subsets)."""
    if isinstance(ds, Subset):
        return classes_of(ds.dataset)
    if isinstance(ds, ConcatDataset):
        return classes_of(ds.datasets[0])  # parts agree (_concat)
    names = getattr(ds, "classes", None) or getattr(ds, "categories", None)
    return list(names) if names is not None else None


def _concat(name: str, parts: Sequence[Dataset]) -> ConcatDataset:
    """Splits read as one (DTD and Flowers train + val); refused when they number classes differently."""
    if len({tuple(classes_of(p) or ()) for p in parts}) > 1:
        raise DatasetError(f"{name}: the splits to merge name different classes")
    return ConcatDataset(parts)


def _named(names: Sequence[str]) -> str:
    return repr(names[0]) + (f" (and {len(names) - 1} more)" if len(names) > 1 else "")


def align_test_labels(train: Dataset, test: Dataset, allow_missing: bool = False, name: str = "") -> Dataset:
    """``test`` with its labels numbered by the TRAINING class names, so that a class folder
    missing from one split cannot shift the others' labels. A test class unknown to training is
    refused; a training class without test images is refused unless ``allow_missing``. Datasets
    without class names (CIFAR arrays, list-file sets sharing one class table) are returned as they are."""
    tr, te = classes_of(train), classes_of(test)
    if tr is None or te is None or tr == te:
        return test
    unknown = [c for c in te if c not in tr]
    if unknown:
        raise DatasetError(f"{name}: test class {_named(unknown)} has no training images")
    absent = [c for c in tr if c not in te]
    if absent and not allow_missing:
        raise DatasetError(f"{name}: training class {_named(absent)} has no test images "
                           f"(set DATA.ALLOW_MISSING_TEST_CLASSES True to evaluate without it)")
    index = {c: i for i, c in enumerate(tr)}
    return _Relabel(test, list(range(len(test))), {j: index[c] for j, c in enumerate(te)})


def _caltech_files(ds) -> List[str]:
    """The files torchvision's Caltech-101/256 open for each index (it numbers them per class)."""
    if isinstance(ds, tvd.Caltech101):
        return [str(Path(ds.root, "101_ObjectCategories", ds.categories[y], f"image_{i:04d}.jpg"))
                for y, i in zip(ds.y, ds.index)]
    return [str(Path(ds.root, "256_ObjectCategories", ds.categories[y], f"{y + 1:03d}_{i:04d}.jpg"))
            for y, i in zip(ds.y, ds.index)]


# public attributes listing each index's file: (name, holds pairs); private ones: torchvision_private
_FILE_ATTRS = (("samples", True), ("files", False))


def image_files_of(ds) -> Optional[List[str]]:
    """The image file behind each index of ``ds``; None for in-memory sets (CIFAR, offline sets)."""
    if isinstance(ds, (Subset, _Relabel)):
        base = image_files_of(ds.dataset if isinstance(ds, Subset) else ds.ds)
        return None if base is None else [base[i] for i in ds.indices]
    if isinstance(ds, ConcatDataset):
        parts = [image_files_of(d) for d in ds.datasets]
        return None if any(p is None for p in parts) else [f for p in parts for f in p]
    if isinstance(ds, (tvd.Caltech101, tvd.Caltech256)):
        return _caltech_files(ds)
    for attr, pairs in _FILE_ATTRS:
        if hasattr(ds, attr):
            return [str(v[0] if pairs else v) for v in getattr(ds, attr)]
    return private_files(ds)


def missing_images_of(ds) -> int:
    """Listed images skipped because they were not on disk (Birdsnap), over all parts of ``ds``."""
    if isinstance(ds, (Subset, _Relabel)):
        return missing_images_of(ds.dataset if isinstance(ds, Subset) else ds.ds)
    if isinstance(ds, ConcatDataset):
        return sum(missing_images_of(d) for d in ds.datasets)
    return int(getattr(ds, "missing", 0))


def select_classes(ds, classes: Sequence[int]) -> Dataset:
    mapping = {int(c): i for i, c in enumerate(classes)}
    idx = [i for i, t in enumerate(targets_of(ds)) if t in mapping]
    return _Relabel(ds, idx, mapping)


def first_per_class(targets: Sequence[int], n_train: int, train: bool) -> List[int]:
    """Indices of the first ``n_train`` items of each class (in dataset order) for training, the
    rest for testing. This is the authors' rule for Caltech-101/256 (first 30 / 60 per class). On
    torchvision's Caltech classes dataset order is file-name order (each class's images are
    numbered ``image_0001.jpg``, ...), so the split never depends on directory listing order."""
    seen: Dict[int, int] = defaultdict(int)
    out = []
    for i, t in enumerate(targets):
        if (seen[t] < n_train) == train:
            out.append(i)
        seen[t] += 1
    return out


def _require_md5(name: str, folder: Path, files: Sequence[Sequence[str]]) -> None:
    """Refuse, naming the file, when one of ``files`` ((file name, md5), torchvision's own lists)
    is absent or fails its md5; torchvision's check only says "not found or corrupted". A file
    that fails is never unpickled (CIFAR's batches are pickles)."""
    layout = get_dataset_entry(name).layout
    for fname, md5 in files:
        path = folder / fname
        if not path.is_file():
            raise DatasetError(f"{name}: {path} not found (expected {layout}; rdet never downloads datasets)")
        if not check_integrity(str(path), md5):
            raise DatasetError(f"{name}: {path} fails its md5 check (expected {md5}): the file is corrupted or not "
                               f"the official one; replace it with a fresh copy")


def _read_tsv(path: Path, needed: Sequence[str]) -> List[Dict[str, str]]:
    """Rows of a tab-separated file whose first line names the columns (Birdsnap's lists)."""
    lines = path.read_text().splitlines()
    header = lines[0].strip().split("\t") if lines else []
    absent = [c for c in needed if c not in header]
    if absent:
        raise DatasetError(f"{path}: its header line has no column {absent[0]!r}")
    last = max(header.index(c) for c in needed)
    rows = []
    for n, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        vals = line.strip().split("\t")
        if len(vals) <= last:
            raise DatasetError(f"{path}:{n}: {len(vals)} tab-separated fields, the header names {len(header)}")
        rows.append(dict(zip(header, vals)))
    return rows


# --- the paper's twelve ---------------------------------------------------------------------
@register_dataset("aircraft", 100, "mean_per_class", "fgvc-aircraft-2013b/ (torchvision FGVCAircraft)", "Aircraft")
def _aircraft(root, train, tf):
    return tvd.FGVCAircraft(root, split="trainval" if train else "test", annotation_level="variant", transform=tf,
                            loader=read_image)


@register_dataset("birdsnap", 500, "top1",
                  "birdsnap/{species.txt,images.txt,test_images.txt,download/images/<Species>/*.jpg} "
                  "(Birdsnap 1.1 after its get_birdsnap.py)", "Birdsnap")
def _birdsnap(root, train, tf):
    """Labels from ``species.txt`` (ids 1..500 -> 0..499, names its ``common`` column); test = the
    paths in ``test_images.txt``, train = the rest of ``images.txt``; images the download could
    not fetch from Flickr are skipped and counted."""
    base = root / "birdsnap"
    species = sorted(_read_tsv(base / "species.txt", ("id", "common")), key=lambda r: int(r["id"]))
    label_of = {r["id"]: i for i, r in enumerate(species)}
    test = {ln.strip() for ln in (base / "test_images.txt").read_text().splitlines()[1:] if ln.strip()}
    rows = _read_tsv(base / "images.txt", ("path", "species_id"))
    unlisted = sorted(test - {r["path"] for r in rows})
    if unlisted:
        raise DatasetError(f"birdsnap: test_images.txt lists {_named(unlisted)} which images.txt does not")
    bad = [r["species_id"] for r in rows if r["species_id"] not in label_of]
    if bad:
        raise DatasetError(f"birdsnap: images.txt uses species id {_named(bad)} which species.txt does not list")
    items = [(r["path"], label_of[r["species_id"]]) for r in rows if (r["path"] in test) != train]
    return _image_list(f"birdsnap {'train' if train else 'test'}", base / "download" / "images", items,
                       [r["common"] for r in species], tf, skip_missing=True)


def _cifar(cls, name, root, train, tf):
    _require_md5(name, Path(root) / cls.base_folder,
                 [*cls.train_list, *cls.test_list, (cls.meta["filename"], cls.meta["md5"])])
    return cls(root, train=train, transform=tf, download=False)


@register_dataset("cifar10", 10, "top1", "cifar-10-batches-py/ (torchvision CIFAR10)", "CIFAR-10")
def _cifar10(root, train, tf):
    return _cifar(tvd.CIFAR10, "cifar10", root, train, tf)


@register_dataset("cifar100", 100, "top1", "cifar-100-python/ (torchvision CIFAR100)", "CIFAR-100")
def _cifar100(root, train, tf):
    return _cifar(tvd.CIFAR100, "cifar100", root, train, tf)


@register_dataset("caltech101", 101, "mean_per_class",
                  "caltech101/101_ObjectCategories/<class>/*.jpg (torchvision Caltech101)", "Caltech-101")
def _caltech101(root, train, tf):
    ds = tvd.Caltech101(root, target_type="category", transform=tf, download=False)  # drops BACKGROUND_Google
    return Subset(ds, first_per_class(ds.y, 30, train))


@register_dataset("caltech256", 257, "mean_per_class",
                  "caltech256/256_ObjectCategories/<nnn.class>/*.jpg (torchvision Caltech256)", "Caltech-256")
def _caltech256(root, train, tf):
    ds = tvd.Caltech256(root, transform=tf, download=False)
    return Subset(ds, first_per_class(ds.y, 60, train))


@register_dataset("cars", 196, "top1", "stanford_cars/ (torchvision StanfordCars: devkit, cars_train, cars_test)",
                  "Cars")
def _cars(root, train, tf):
    return tvd.StanfordCars(root, split="train" if train else "test", transform=tf, download=False, loader=read_image)


@register_dataset("dtd", 47, "top1", "dtd/dtd/{images,labels} (torchvision DTD)", "DTD")
def _dtd(root, train, tf):
    if train:  # split 1: train + val (3760 images), as the paper's Table 5
        return _concat("dtd", [tvd.DTD(root, split=s, partition=1, transform=tf, loader=read_image)
                               for s in ("train", "val")])
    return tvd.DTD(root, split="test", partition=1, transform=tf, loader=read_image)


@register_dataset("flowers", 102, "mean_per_class", "flowers-102/{jpg,imagelabels.mat,setid.mat} (torchvision Flowers102)",
                  "Flowers")
def _flowers(root, train, tf):
    files = flowers102_files()
    _require_md5("flowers", root / "flowers-102", [files["label"], files["setid"]])
    if train:  # train + val = 2040 images, test 6149 (Table 5)
        return _concat("flowers", [tvd.Flowers102(root, split=s, transform=tf, loader=read_image)
                                   for s in ("train", "val")])
    return tvd.Flowers102(root, split="test", transform=tf, loader=read_image)


@register_dataset("food", 101, "top1", "food-101/{images,meta} (torchvision Food101)", "Food")
def _food(root, train, tf):
    return tvd.Food101(root, split="train" if train else "test", transform=tf, loader=read_image)


@register_dataset("pets", 37, "mean_per_class", "oxford-iiit-pet/{images,annotations} (torchvision OxfordIIITPet)",
                  "Pets")
def _pets(root, train, tf):
    return tvd.OxfordIIITPet(root, split="trainval" if train else "test", transform=tf)


@register_dataset("sun397", 397, "top1",
                  "SUN397/{ClassName.txt,Training_01.txt,Testing_01.txt,<l>/<class>/sun_*.jpg} "
                  "(SUN397.tar.gz + Partitions.zip)", "SUN397")
def _sun397(root, train, tf):
    """The official partition 1 (50 train + 50 test images per class), as the authors' code;
    partition lines look like ``/a/abbey/sun_aaaaaaaaa.jpg``."""
    base = root / "SUN397"
    names = [ln.strip()[3:] for ln in (base / "ClassName.txt").read_text().splitlines() if ln.strip()]  # "/a/abbey"
    part = base / ("Training_01.txt" if train else "Testing_01.txt")
    if not part.is_file():
        raise DatasetError(f"sun397: partition file {part} not found (rdet uses SUN397's official partition 1: "
                           f"put Training_01.txt and Testing_01.txt from Partitions.zip into {base})")
    index = {c: i for i, c in enumerate(names)}
    items = []
    for ln in part.read_text().splitlines():
        rel = ln.strip().lstrip("/")
        cls = "/".join(rel.split("/")[1:-1])
        if rel and cls not in index:
            raise DatasetError(f"sun397: {part.name} lists {ln.strip()}, whose class {cls!r} is not in ClassName.txt")
        if rel:
            items.append((rel, index[cls]))
    return _image_list("sun397", base, items, names, tf, skip_missing=False)


@register_dataset("imagenet", 1000, "top1", "{train,val}/<wnid>/*.JPEG (ImageNet layout, ImageFolder)", "ImageNet")
def _imagenet(root, train, tf):
    return tvd.ImageFolder(root / ("train" if train else "val"), transform=tf, loader=read_image)


@register_dataset("imagefolder", 0, "top1", "{train,test}/<class>/* (ImageFolder)")
def _imagefolder(root, train, tf):
    return tvd.ImageFolder(root / ("train" if train else "test"), transform=tf, loader=read_image)


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

    return digits_dataset(train, transform=tf, root=root)


def num_classes_of(name: str, ds: Dataset, classes: Sequence[int] = ()) -> int:
    """The classifier's width for ``ds``: the selected classes, else the class folders an
    ImageFolder-layout set really has (an ImageNet-100-style subset of ImageNet's layout gets a
    100-way head, not 1000 outputs of which 900 never see an image), else the catalog's count."""
    if classes:
        return len(classes)
    n = get_dataset_entry(name).num_classes
    # an ImageFolder's classes are its folders; list-defined sets (Birdsnap, SUN397...) name all theirs
    folders = len(ds.classes) if isinstance(ds, tvd.ImageFolder) else len(getattr(ds, "classes", None) or [])
    if n and isinstance(ds, tvd.ImageFolder) and folders != n:
        logger.warning("%s: the folder has %d class folders, not the %d of the full dataset: the head has %d "
                       "outputs, one per folder (sorted by name)", name, folders, n, folders)
        return folders
    return n or folders or (max(targets_of(ds)) + 1)
