"""The one module that reads torchvision datasets' private attributes, and why.

rdet needs each dataset's labels and image files *without decoding images*: to align test labels
with training class names, to make stratified validation splits, to check every file before a run
and to fingerprint a dataset for rdet.select's cache. torchvision exposes these publicly only for
``ImageFolder``-style sets (``targets``, ``samples``); its other classes keep them private:

* ``_labels``: DTD, Flowers102, Food101, OxfordIIITPet, StanfordCars, FGVCAircraft (label per index);
* ``_samples``: StanfordCars (``(path, label)`` pairs);
* ``_image_files``: DTD, Flowers102, Food101, OxfordIIITPet, FGVCAircraft (path per index);
* ``_images``: OxfordIIITPet in some versions (path per index);
* ``Flowers102._file_dict``: the names and md5 sums of the label and split files, which rdet checks
  before torchvision reads them (torchvision checks only when it downloads).

Should torchvision rename one, the functions here return ``None`` and the callers fall back to
reading samples (labels) or report the files as unknown; ``tests/test_classification_data.py``
runs every dataset on its real layout and would show it.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Tuple

PRIVATE_LABELS = ("_labels", "_samples")  # (attribute, in the order rdet prefers them)
# attribute -> holds (path, label) pairs
PRIVATE_FILES: Tuple[Tuple[str, bool], ...] = (("_samples", True), ("_image_files", False), ("_images", False))


def private_targets(ds) -> Optional[List[int]]:
    """The label of each index from a private attribute of ``ds``; ``None`` if it has none."""
    for attr in PRIVATE_LABELS:
        if hasattr(ds, attr):
            t = getattr(ds, attr)
            return [int(s[1]) for s in t] if attr == "_samples" else [int(v) for v in t]
    return None


def private_files(ds) -> Optional[List[str]]:
    """The image file of each index from a private attribute of ``ds``; ``None`` if it has none."""
    for attr, pairs in PRIVATE_FILES:
        if hasattr(ds, attr):
            return [str(v[0] if pairs else v) for v in getattr(ds, attr)]
    return None


def flowers102_files() -> Dict[str, Tuple[str, str]]:
    """``{"label": (file, md5), "setid": (file, md5), ...}`` of torchvision's Flowers102."""
    from torchvision import datasets

    return dict(datasets.Flowers102._file_dict)
