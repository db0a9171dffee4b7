"""rdet: adversarially robust ImageNet backbones for transfer learning and Detectron2 detection."""

__version__ = "0.1.0"
