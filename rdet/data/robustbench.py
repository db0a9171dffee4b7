"""RobustBench's ImageNet test subset: the fixed 5,000 validation images of its leaderboard.

``robustbench_imagenet_test_ids.txt`` beside this module is RobustBench's own list
(``robustbench/helper_files/imagenet_test_image_ids.txt``, RobustBench/robustbench at commit
78fcc9e, MIT licence), one ``<wnid>/ILSVRC2012_val_<n>.JPEG`` per line, in the order RobustBench
evaluates them. Labels follow RobustBench (and torchvision's ImageFolder, and rdet's ``imagenet``
dataset): the position of the image's wnid among the sorted class folders of ``val/``, so the
folder must hold ImageNet's class folders, all of them (a missing one would shift every label).
"""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

from rdet.core.errors import DatasetError
from rdet.data.classification import ImageList

SUBSETS = ("robustbench",)
LIST_FILE = Path(__file__).with_name("robustbench_imagenet_test_ids.txt")
N_IMAGES = 5000


def read_list(path: Optional[str | Path] = None) -> List[str]:
    """The list's entries (``wnid/file``), in order; ``path`` "" or None: the shipped list."""
    path = Path(path) if path else LIST_FILE
    try:
        lines = [ln.strip() for ln in path.read_text().splitlines()]
    except OSError as e:
        raise DatasetError(f"cannot read the image list {path}: {e.strerror or e}") from None
    names = [ln for ln in lines if ln]
    bad = next((n for n in names if n.count("/") != 1), None)
    if bad is not None or not names:
        raise DatasetError(f"{path}: expected one <wnid>/<file> per line, found {bad!r}" if bad
                           else f"{path} lists no images")
    return names


def list_sha1(path: Optional[str | Path] = None) -> str:
    """SHA-1 of the list's entries joined by newlines, in order: a record's ``images_sha1`` equals
    the shipped list's exactly when it evaluated RobustBench's images, all of them, in its order."""
    import hashlib

    return hashlib.sha1("\n".join(read_list(path)).encode()).hexdigest()


def robustbench_imagenet(root: str | Path, transform=None, num_classes: int = 1000,
                         list_path: Optional[str | Path] = None, max_images: int = 0) -> ImageList:
    """RobustBench's ImageNet images under ``root/val`` (ImageNet layout), in the list's order.

    A listed image that is not there is a one-line :class:`DatasetError` naming it (and counting
    the others): RobustBench's numbers are over exactly these images. ``max_images`` > 0 keeps
    the first ones of the list (quick runs; the record says how many)."""
    val = Path(root) / "val"
    names = read_list(list_path)
    if max_images > 0:
        names = names[:max_images]
    missing = [n for n in names if not (val / n).is_file()]
    if missing:
        more = f" ({len(missing) - 1} more of the {len(names)} listed images are missing too)" if len(missing) > 1 else ""
        raise DatasetError(f"imagenet: RobustBench's subset lists {missing[0]}, which is not under {val}{more}")
    classes = sorted(p.name for p in val.iterdir() if p.is_dir())
    if len(classes) != num_classes:
        raise DatasetError(f"imagenet: {val} has {len(classes)} class folders, not {num_classes}: labels are the "
                           f"position of each wnid among the sorted class folders, so all of them must be there")
    index = {c: i for i, c in enumerate(classes)}
    return ImageList([str(val / n) for n in names], [index[n.split("/")[0]] for n in names], classes, transform)
