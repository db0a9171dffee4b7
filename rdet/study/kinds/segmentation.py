"""``segmentation``: every backbone x dataset x seed through Detectron2's semantic segmentation
(Semantic FPN, UperNet, DeepLabV3+: the config's head), mIoU per cell::

    segmentation:
      - {name: ade20k_upernet, config: configs/ade20k_upernet_r50_160k.yaml, seeds: [0, 1, 2]}
      - {name: fashion_sem, config: configs/demo_sem_r18_fpn.yaml, opts: [SOLVER.MAX_ITER, 150],
         backbones: [eps0, l2_eps1]}   # default: every backbone of the study

Each backbone is converted once (``convert/<backbone>``, the cell the detection section makes
too, so a study with both converts once), then trained per dataset and seed
(``segment/<name>/<backbone>/s<seed>``). The converter's config is merged over the dataset's
(``rdet.detection.run(backbone_config=...)``): pixel statistics, the ResNet geometry or the timm
arch; for UperNet the converter's FPN builder becomes the one whose stages it takes. A cell that
was stopped resumes from its last checkpoint. Records: ``rdet.report.segmentation``."""
from __future__ import annotations

from rdet.core.errors import ConfigError
from rdet.study.base import Cell, register_kind
from rdet.report.sections import SectionOutput, register_section
from rdet.study.kinds.detection import Detectron2Cells


class Segment(Detectron2Cells):
    """Semantic segmentation per backbone x dataset x seed through Detectron2 (mIoU)."""
    name, section, order = "segment", "segmentation", 45

    def expand(self, section, ex):
        cells = []
        for task, label, b, conv in self.tasks(section, ex, cells):
            seeds = task.get("seeds", [0])
            if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) for s in seeds):
                raise ConfigError(f"{ex.path}: segmentation task {label}: seeds must be a list of integers")
            for seed in seeds:
                cells.append(Cell(self.name, f"segment/{label}/{b.name}/s{seed}", "transfer",
                                  {"config": task["config"], "opts": list(task.get("opts", [])), "convert": conv,
                                   "backbone": b.name, "seed": seed, "task": label}, (conv,)))
        return cells

    def summary(self, rec):
        return f"mIoU {rec['mIoU']:.2f}" if rec.get("mIoU") is not None else "no mIoU (no test set)"


register_kind(Segment())


# The report's section for this kind's records (rdet.report.sections: the report loops over them).
@register_section("segmentation", 55, tasks=("segmentation",))
def _segmentation(records, ctx):
    from rdet.report.segmentation import segmentation_markdown

    md = segmentation_markdown(records)
    return SectionOutput("\n" + md) if md else None
