"""Backbone registry, robust-model catalog and checkpoint loading (see ``registry.py``)."""
from rdet.backbones import models as _models  # noqa: F401  (registers the torchvision architectures)
from rdet.backbones import timm_models as _timm_models  # noqa: F401  (registers ConvNeXt, Swin, ViT)
from rdet.backbones.catalog import CATALOG, CatalogEntry, download, eps_label, get_entry
from rdet.backbones.checkpoint import (ALLOW_PICKLE_FLAG, LoadedCheckpoint, load_checkpoint, load_weights,
                                       sniff_arch, to_torchvision)
from rdet.backbones.classifier import Classifier, InputNormalize, classifier_from, create_classifier, load_classifier
from rdet.backbones.registry import (BACKBONE_REGISTRY, BackboneSpec, D2Geometry, IMAGENET_MEAN, IMAGENET_STD, Stage,
                                     get_spec, list_backbones, list_families, register_backbone)

__all__ = [
    "BACKBONE_REGISTRY", "BackboneSpec", "D2Geometry", "IMAGENET_MEAN", "IMAGENET_STD", "register_backbone",
    "get_spec", "list_backbones", "list_families", "Stage", "Classifier", "InputNormalize", "create_classifier",
    "load_classifier", "classifier_from",
    "CATALOG", "CatalogEntry", "get_entry", "download", "eps_label",
    "LoadedCheckpoint", "load_checkpoint", "load_weights", "sniff_arch", "to_torchvision", "ALLOW_PICKLE_FLAG",
]
