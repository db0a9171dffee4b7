"""Faster/Mask R-CNN on VOC/COCO (and rdet's offline set) from converted robust backbones."""
from rdet.detection.recipe import select_for_3x
from rdet.detection.train import run

__all__ = ["run", "select_for_3x"]
