"""DeepLabV3+ whose ASPP image-pooling branch averages the whole feature map, as the paper
defines it (Chen et al. 2018: "image-level features" by global average pooling) and as
mmsegmentation runs it, registered as ``DeepLabV3PlusGlobalPoolHead``.

detectron2's ``DeepLabV3PlusHead`` pools with a fixed window, the training crop / output stride,
which the TensorFlow reference uses at Cityscapes' fixed 1024 x 2048 test size; on datasets of
varying image sizes (Pascal VOC, ADE20K) a test image whose feature map that window does not
divide stops evaluation. Everything else is detectron2's head.
"""
from __future__ import annotations

from detectron2.modeling import SEM_SEG_HEADS_REGISTRY
from detectron2.projects.deeplab import DeepLabV3PlusHead


@SEM_SEG_HEADS_REGISTRY.register()
class DeepLabV3PlusGlobalPoolHead(DeepLabV3PlusHead):
    @classmethod
    def from_config(cls, cfg, input_shape):
        ret = super().from_config(cfg, input_shape)
        ret["train_size"] = None  # detectron2's ASPP then pools adaptively to 1 x 1
        return ret
