"""Semantic segmentation datasets as people download them, registered with detectron2 under the
names its builtin catalog uses (plus Pascal VOC's and rdet's offline set), each checked before
any work starts.

Where (``$DETECTRON2_DATASETS``, default ``datasets``, as detectron2's builtin sets):

* ``ade20k_sem_seg_{train,val}``: ``ADEChallengeData2016/{images,annotations}/{training,validation}``
  as unpacked (labels 0 = "other", 1..150). detectron2 wants ``annotations_detectron2/`` (label - 1,
  0 -> 255), made by its ``prepare_ade20k_sem_seg.py``; rdet makes it itself, once, in the dataset
  folder or, when that is read-only, in a cache folder (``$RDET_CACHE``, else ``~/.cache/rdet``).
* ``cityscapes_fine_sem_seg_{train,val}``: ``cityscapes/leftImg8bit/<split>/<city>/*_leftImg8bit.png``
  + ``gtFine/<split>/<city>/*_gtFine_labelIds.png``; the 19 train ids (255 ignore) come from
  ``cityscapesscripts``' label table into ``cityscapes/gtFine_trainIds/<split>/<city>/
  *_gtFine_labelTrainIds.png`` (in the cache when the folder is read-only), unless gtFine holds
  them already (cityscapesscripts' ``createTrainIdLabelImgs``). Evaluated with
  ``SemSegEvaluator``, as every set here.
* ``voc_2012_sem_seg_{train,val}``: ``VOC2012/JPEGImages``, ``SegmentationClass`` (palette PNGs,
  21 classes, 255 = border / ignore) and ``ImageSets/Segmentation/{train,val}.txt``;
  ``voc_2012_sem_seg_train_aug``: ``SegmentationClassAug`` (SBD's extra labels) for the ids in
  ``ImageSets/Segmentation/train_aug.txt`` when present, else every id there but val's.
* ``rdet_fashion_sem_{train,val}``: rdet's composed offline set (:mod:`rdet.data.offline.segmentation`)
  under ``$RDET_DATASETS``, in ADE20K's layout and through ADE20K's code.

Checks (one :class:`DatasetError` line each): a missing folder or split file, an image without
its label, an image and label of different sizes, an RGB label where an index / palette PNG is
expected, a label value outside [0, classes) and the ignore value (naming file and value). A
full pass reads every label once; a stamp in the cache folder remembers that a set passed (keyed
by its files' names, sizes and modification times), so later runs start at once.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from rdet.core.errors import DatasetError

IGNORE = 255
Pair = Tuple[str, str]  # (image file, label file)


@dataclass(frozen=True)
class SemSegSet:
    family: str  # ade20k, cityscapes, voc, demo
    split: str  # the family's own split name


SETS: Dict[str, SemSegSet] = {
    "ade20k_sem_seg_train": SemSegSet("ade20k", "training"),
    "ade20k_sem_seg_val": SemSegSet("ade20k", "validation"),
    "cityscapes_fine_sem_seg_train": SemSegSet("cityscapes", "train"),
    "cityscapes_fine_sem_seg_val": SemSegSet("cityscapes", "val"),
    "voc_2012_sem_seg_train": SemSegSet("voc", "train"),
    "voc_2012_sem_seg_val": SemSegSet("voc", "val"),
    "voc_2012_sem_seg_train_aug": SemSegSet("voc", "train_aug"),
    "rdet_fashion_sem_train": SemSegSet("demo", "training"),
    "rdet_fashion_sem_val": SemSegSet("demo", "validation"),
}
VOC_CLASSES = ("background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
               "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train",
               "tvmonitor")
DATA_NOTES = {"ade20k": "ADE20K (ADEChallengeData2016, 150 classes)",
              "cityscapes": "Cityscapes fine (19 train-id classes)",
              "voc": "Pascal VOC 2012 segmentation (21 classes)"}


def d2_root() -> Path:
    return Path(os.path.expanduser(os.environ.get("DETECTRON2_DATASETS", "datasets")))


def cache_dir(dataset_dir: Path) -> Path:
    """Where rdet writes what it derives from a read-only dataset folder: one folder per dataset path."""
    base = Path(os.path.expanduser(os.environ.get("RDET_CACHE", "~/.cache/rdet")))
    key = hashlib.sha1(str(dataset_dir.resolve()).encode()).hexdigest()[:12]
    return base / "sem_seg" / f"{dataset_dir.name}-{key}"


def _writable(folder: Path) -> bool:
    try:
        with tempfile.TemporaryFile(dir=folder):
            return True
    except OSError:
        return False


def _signature(files: Iterable[str], extra: str = "") -> str:
    h = hashlib.sha1(extra.encode())
    for f in files:
        st = os.stat(f)
        h.update(f"{f}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


# ---- reading and checking label files ---------------------------------------------------------

def _open_label(path: str, expect: str) -> np.ndarray:
    """A label PNG's stored values; refuses a colour (RGB) image: ``expect`` says what it should be."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            if im.mode not in ("L", "P", "I;16", "I"):
                raise DatasetError(f"{path}: a {im.mode} image, but labels here are {expect} (one class value per "
                                   f"pixel); convert colour-coded labels to class indices first")
            return np.array(im)
    except OSError as e:
        raise DatasetError(f"{path}: not a readable label image ({e})") from None


def _image_size(path: str) -> Tuple[int, int]:
    from PIL import Image

    try:
        with Image.open(path) as im:
            return im.size
    except OSError as e:
        raise DatasetError(f"{path}: not a readable image ({e})") from None


def check_pair(image: str, label: str, num_classes: int, ignore: int, expect: str,
               shift: int = 0) -> np.ndarray:
    """The label of ``image``, checked: same size, an index image, every value in ``[shift,
    num_classes + shift)`` or ``ignore``. Returns the stored values."""
    lab = _open_label(label, expect)
    w, h = _image_size(image)
    if lab.shape[:2] != (h, w):
        raise DatasetError(f"{label}: label is {lab.shape[1]}x{lab.shape[0]} but its image {image} is {w}x{h}")
    values = np.unique(lab)
    bad = values[((values < shift) | (values >= num_classes + shift)) & (values != ignore)]
    if bad.size:
        raise DatasetError(f"{label}: label value {int(bad[0])} is outside [{shift}, {num_classes + shift - 1}]"
                           + (f" and is not the ignore value {ignore}" if ignore is not None else ""))
    return lab


def check_pairs(pairs: Sequence[Pair], num_classes: int, ignore: int, expect: str, stamp_dir: Path,
                what: str) -> None:
    """Every pair checked with :func:`check_pair`, once per version of the files (a stamp)."""
    if not pairs:
        raise DatasetError(f"{what}: no images found")
    sig = _signature([f for p in pairs for f in p], f"{num_classes}/{ignore}")
    stamp = stamp_dir / f".rdet_checked_{sig[:16]}"
    if stamp.is_file():
        return
    for image, label in pairs:
        check_pair(image, label, num_classes, ignore, expect)
    try:
        stamp_dir.mkdir(parents=True, exist_ok=True)
        stamp.write_text(f"{len(pairs)} pairs checked\n")
    except OSError:
        pass  # a read-only place: the check runs again next time


def _pairs_by_stem(image_dir: Path, label_dir: Path, image_ext: str, label_ext: str, what: str,
                   image_suffix: str = "", label_suffix: str = "") -> List[Pair]:
    """(image, label) pairs matched by relative path without extension (and the given suffixes)."""
    for d in (image_dir, label_dir):
        if not d.is_dir():
            raise DatasetError(f"{what}: {d} not found")
    labels = {str(p.relative_to(label_dir))[: -len(label_suffix + label_ext)]: p
              for p in sorted(label_dir.rglob(f"*{label_suffix}{label_ext}"))}
    pairs = []
    for img in sorted(image_dir.rglob(f"*{image_suffix}{image_ext}")):
        key = str(img.relative_to(image_dir))[: -len(image_suffix + image_ext)]
        if key not in labels:
            raise DatasetError(f"{img}: no label {label_dir / (key + label_suffix + label_ext)}")
        pairs.append((str(img), str(labels[key])))
    if not pairs:
        raise DatasetError(f"{what}: no *{image_suffix}{image_ext} images in {image_dir}")
    return pairs


def _derive(pairs: Sequence[Pair], out_dir: Path, src_root: Path, convert: Callable[[str, str], np.ndarray],
            out_name: Callable[[Path], Path], what: str) -> List[Pair]:
    """Write ``convert(image, label)`` for every pair under ``out_dir`` (relative paths kept,
    renamed by ``out_name``), atomically and once: a complete folder carries a stamp of its
    sources; an interrupted or failed pass leaves nothing."""
    sig = _signature([lbl for _, lbl in pairs], what)
    out = [(img, str(out_dir / out_name(Path(lbl).relative_to(src_root)))) for img, lbl in pairs]
    stamp = out_dir / ".rdet_prepared.json"
    if stamp.is_file() and json.loads(stamp.read_text()).get("signature") == sig:
        return out
    from PIL import Image

    made = [p for p in reversed(out_dir.parents) if not p.exists()]  # removed again if this pass fails
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    done = False
    try:
        for (img, lbl), (_, dst) in zip(pairs, out):
            target = tmp / Path(dst).relative_to(out_dir)
            target.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(convert(img, lbl).astype(np.uint8)).save(target)
        (tmp / ".rdet_prepared.json").write_text(json.dumps({"signature": sig, "files": len(pairs), "from": what}))
        if out_dir.exists():
            shutil.rmtree(out_dir)  # an older preparation of other sources
        os.replace(tmp, out_dir)
        done = True
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        for p in [] if done else reversed(made):
            try:
                p.rmdir()
            except OSError:
                break
    return out


def _derived_dir(dataset_dir: Path, sub: str) -> Path:
    """``dataset_dir/sub`` when rdet may write there, else the same path under the cache folder."""
    return dataset_dir / sub if _writable(dataset_dir) else cache_dir(dataset_dir) / sub


# ---- the families ------------------------------------------------------------------------------

def _ade_pairs(ade: Path, split: str, classes: Sequence[str], what: str) -> List[Pair]:
    """ADE20K's raw labels (0 other, 1..N), checked while detectron2's (label - 1, 0 -> 255) are made."""
    raw = _pairs_by_stem(ade / "images" / split, ade / "annotations" / split, ".jpg", ".png", what)
    n = len(classes)

    def convert(img: str, lbl: str) -> np.ndarray:
        lab = check_pair(img, lbl, n + 1, None, "greyscale index PNGs (ADE20K: 0 other, 1..N)").astype(np.int16)
        return np.where(lab == 0, IGNORE, lab - 1)

    return _derive(raw, _derived_dir(ade, "annotations_detectron2") / split, ade / "annotations" / split, convert,
                   lambda rel: rel, f"ade20k {split}")


def _ade_classes(ade: Path) -> Tuple[str, ...]:
    from detectron2.data.datasets.builtin_meta import ADE20K_SEM_SEG_CATEGORIES

    from rdet.data.offline.segmentation import CLASSES_FILE

    own = ade / CLASSES_FILE
    if own.is_file():
        return tuple(x.strip() for x in own.read_text().splitlines() if x.strip())
    return tuple(ADE20K_SEM_SEG_CATEGORIES)


def _cityscapes_classes() -> Tuple[str, ...]:
    from cityscapesscripts.helpers.labels import labels

    return tuple(lb.name for lb in sorted((lb for lb in labels if 0 <= lb.trainId < IGNORE), key=lambda lb: lb.trainId))


def _cityscapes_pairs(root: Path, split: str, what: str) -> List[Pair]:
    images, gt = root / "leftImg8bit" / split, root / "gtFine" / split
    for d in (images, gt):
        if not d.is_dir():
            raise DatasetError(f"{what}: {d} not found (expected leftImg8bit/ and gtFine/ as unpacked)")
    if any(gt.rglob("*_gtFine_labelTrainIds.png")):  # made already (cityscapesscripts' createTrainIdLabelImgs)
        return _pairs_by_stem(images, gt, ".png", ".png", what, "_leftImg8bit", "_gtFine_labelTrainIds")
    from cityscapesscripts.helpers.labels import labels

    lut = np.full(256, IGNORE, np.uint8)
    for lb in labels:
        if lb.id >= 0:
            lut[lb.id] = lb.trainId if 0 <= lb.trainId < IGNORE else IGNORE
    ids = _pairs_by_stem(images, gt, ".png", ".png", what, "_leftImg8bit", "_gtFine_labelIds")

    def convert(img: str, lbl: str) -> np.ndarray:
        return lut[check_pair(img, lbl, 34, None, "greyscale label-id PNGs (gtFine_labelIds)")]

    rename = lambda rel: rel.with_name(rel.name.replace("_gtFine_labelIds", "_gtFine_labelTrainIds"))  # noqa: E731
    return _derive(ids, _derived_dir(root, "gtFine_trainIds") / split, gt, convert, rename, f"cityscapes {split}")


def _voc_pairs(voc: Path, split: str, what: str) -> List[Pair]:
    sets = voc / "ImageSets" / "Segmentation"
    label_dir = voc / ("SegmentationClassAug" if split == "train_aug" else "SegmentationClass")
    if split == "train_aug":
        if not label_dir.is_dir():
            raise DatasetError(f"{what}: {label_dir} not found (SBD's augmented labels)")
        listed = sets / "train_aug.txt"
        if listed.is_file():
            ids = listed.read_text().split()
        else:
            val = set(_read_split(sets / "val.txt", what))
            ids = [p.stem for p in sorted(label_dir.glob("*.png")) if p.stem not in val]
    else:
        ids = _read_split(sets / f"{split}.txt", what)
    pairs = [(str(voc / "JPEGImages" / f"{i}.jpg"), str(label_dir / f"{i}.png")) for i in ids]
    for img, lbl in pairs:
        for f in (img, lbl):
            if not os.path.isfile(f):
                raise DatasetError(f"{what}: {f} not found (listed in the split)")
    return pairs


def _read_split(path: Path, what: str) -> List[str]:
    if not path.is_file():
        raise DatasetError(f"{what}: split file {path} not found")
    ids = path.read_text().split()
    if not ids:
        raise DatasetError(f"{what}: split file {path} lists no images")
    return ids


def _demo_root() -> Path:
    from rdet.data.offline.segmentation import compose_segmentation_dataset

    return compose_segmentation_dataset() / "ADEChallengeData2016"


def _ade_dir(name: str) -> Path:
    ade = _demo_root() if SETS[name].family == "demo" else d2_root() / "ADEChallengeData2016"
    if not ade.is_dir():
        raise DatasetError(f"dataset {name}: {ade} not found (DETECTRON2_DATASETS={d2_root()}; expected "
                           "ADEChallengeData2016/{images,annotations}/{training,validation} as unpacked)")
    return ade


def dataset_classes(name: str) -> Tuple[Tuple[str, ...], str]:
    """Class names (in label order) and a data note for one of :data:`SETS`; reads no label."""
    from rdet.data.offline.segmentation import DATA_NOTE

    family = SETS[name].family
    if family in ("ade20k", "demo"):
        return _ade_classes(_ade_dir(name)), DATA_NOTE if family == "demo" else DATA_NOTES["ade20k"]
    if family == "cityscapes":
        return _cityscapes_classes(), DATA_NOTES["cityscapes"]
    return VOC_CLASSES, DATA_NOTES["voc"]


def dataset_pairs(name: str, classes: Sequence[str]) -> List[Pair]:
    """(image, label) pairs ready for detectron2 (labels 0..classes-1, 255 ignore), preparing
    derived labels and checking every label the first time."""
    s = SETS[name]
    what = f"dataset {name}"
    if s.family in ("ade20k", "demo"):
        return _ade_pairs(_ade_dir(name), s.split, classes, what)
    if s.family == "cityscapes":
        root = d2_root() / "cityscapes"
        pairs = _cityscapes_pairs(root, s.split, what)
        check_pairs(pairs, len(classes), IGNORE, "greyscale train-id PNGs", cache_dir(root), what)
        return pairs
    voc = d2_root() / "VOC2012"
    if not voc.is_dir():
        raise DatasetError(f"{what}: {voc} not found (DETECTRON2_DATASETS={d2_root()}; expected VOC2012/"
                           "{JPEGImages,SegmentationClass,ImageSets/Segmentation})")
    pairs = _voc_pairs(voc, s.split, what)
    check_pairs(pairs, len(classes), IGNORE, "palette or index PNGs", cache_dir(voc), what)
    return pairs


def register_sem_seg_dataset(name: str, num_classes: Optional[int] = None) -> None:
    """Prepare, check and (re-)register ``name`` (one of :data:`SETS`) with detectron2; with
    ``num_classes`` (the config's ``MODEL.SEM_SEG_HEAD.NUM_CLASSES``), first refuse a dataset
    with another class count."""
    from detectron2.data import DatasetCatalog, MetadataCatalog

    from rdet.core.errors import ConfigError

    classes, note = dataset_classes(name)
    if num_classes is not None and len(classes) != num_classes:
        raise ConfigError(f"MODEL.SEM_SEG_HEAD.NUM_CLASSES {num_classes}, but dataset {name} has {len(classes)} "
                          "classes")
    pairs = dataset_pairs(name, classes)
    if name in DatasetCatalog.list():
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
    dicts = [{"file_name": img, "sem_seg_file_name": lbl} for img, lbl in pairs]
    DatasetCatalog.register(name, lambda d=dicts: [dict(x) for x in d])
    MetadataCatalog.get(name).set(stuff_classes=list(classes), ignore_label=IGNORE, evaluator_type="sem_seg",
                                  image_root=str(Path(pairs[0][0]).parent), sem_seg_root=str(Path(pairs[0][1]).parent),
                                  data_note=note)


def check_sem_seg_datasets(names: Sequence[str], num_classes: int) -> None:
    """Register every name of :data:`SETS` among ``names`` (see :func:`register_sem_seg_dataset`);
    other names (registered by the user) must have ``num_classes`` ``stuff_classes`` too."""
    from detectron2.data import MetadataCatalog

    from rdet.core.errors import ConfigError

    for name in names:
        if name in SETS:
            register_sem_seg_dataset(name, num_classes)
            continue
        classes = getattr(MetadataCatalog.get(name), "stuff_classes", None)
        if classes is not None and len(classes) != num_classes:
            raise ConfigError(f"MODEL.SEM_SEG_HEAD.NUM_CLASSES {num_classes}, but dataset {name} has {len(classes)} "
                              f"classes")
