"""Detection datasets: detectron2's builtin COCO/VOC registrations (under ``$DETECTRON2_DATASETS``)
checked for presence, plus rdet's offline composed set registered as COCO instances."""
from __future__ import annotations

import os
from typing import Sequence

from rdet.core.errors import DatasetError

DEMO_TRAIN, DEMO_VAL = "rdet_fashion_det_train", "rdet_fashion_det_val"
_LAYOUTS = {
    "coco": "coco/annotations/instances_{train,val}2017.json + coco/{train,val}2017/*.jpg",
    "pascal_voc": "VOC2007/{Annotations,ImageSets/Main,JPEGImages} (and VOC2012/ for voc_2012_*)",
}


def register_demo_dataset(root=None) -> None:
    """Compose (once) and register rdet's offline detection set as ``rdet_fashion_det_{train,val}``."""
    from detectron2.data import DatasetCatalog, MetadataCatalog
    from detectron2.data.datasets import register_coco_instances

    from rdet.data.offline import DETECTION_DATA_NOTE, compose_detection_dataset
    from rdet.data.offline.detection import detection_split_paths

    if DEMO_TRAIN in DatasetCatalog.list():
        return
    path = compose_detection_dataset(root)
    for name, split in ((DEMO_TRAIN, "train"), (DEMO_VAL, "val")):
        p = detection_split_paths(path, split)
        register_coco_instances(name, {}, p["json_file"], p["image_root"])
        MetadataCatalog.get(name).set(data_note=DETECTION_DATA_NOTE)


def check_datasets(names: Sequence[str]) -> None:
    """One-line :class:`DatasetError` for an unregistered name or a registered one not on disk."""
    from detectron2.data import DatasetCatalog, MetadataCatalog

    if any(n.startswith("rdet_fashion_det") for n in names):
        register_demo_dataset()
    registered = set(DatasetCatalog.list())
    for name in names:
        if name not in registered:
            raise DatasetError(f"dataset {name!r} is not registered with detectron2 (e.g. coco_2017_train, "
                               f"voc_2007_trainval, {DEMO_TRAIN})")
        meta = MetadataCatalog.get(name)
        paths = [getattr(meta, k) for k in ("json_file", "image_root", "dirname") if hasattr(meta, k)]
        missing = [p for p in paths if not os.path.exists(p)]
        if missing:
            layout = _LAYOUTS.get(getattr(meta, "evaluator_type", ""), "the layout detectron2 expects")
            root = os.environ.get("DETECTRON2_DATASETS", "datasets")
            raise DatasetError(f"dataset {name}: {missing[0]} not found (DETECTRON2_DATASETS={root}; expected "
                               f"{layout} there)")


def data_note(names: Sequence[str]) -> str:
    from detectron2.data import MetadataCatalog

    notes = {getattr(MetadataCatalog.get(n), "data_note", n) for n in names}
    return "; ".join(sorted(notes))
