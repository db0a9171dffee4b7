"""Conversion of rdet / robust / torchvision ResNets into Detectron2 backbones."""
from rdet.convert.detectron2 import (MAX_REL_ERROR, ConversionResult, build_d2_backbone, compare_features,
                                     convert_to_detectron2, d2_config_dict, read_converted_meta)

__all__ = ["convert_to_detectron2", "read_converted_meta", "ConversionResult", "d2_config_dict",
           "build_d2_backbone", "compare_features", "MAX_REL_ERROR"]
