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

from pathlib import Path

from rdet.core.errors import ConfigError
from rdet.core.records import RECORD_NAME, read_record
from rdet.study.base import Cell, TaskKind, need, register_kind, resolve_config
from rdet.report.sections import SectionOutput, register_section
from rdet.study.kinds.detection import convert_cell


class Segment(TaskKind):
    """Semantic segmentation per backbone x dataset x seed through Detectron2 (mIoU)."""
    name, section, order = "segment", "segmentation", 45

    def expand(self, section, ex):
        cells = []
        for task in section or []:
            label = need(task, "name", "a segmentation task")
            need(task, "config", f"segmentation task {label}")
            seeds = task.get("seeds", [0])
            if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) for s in seeds):
                raise ConfigError(f"{ex.path}: segmentation task {label}: seeds must be a list of integers")
            for b in ex.need_backbones(f"segmentation task {label}", task.get("backbones")):
                conv = convert_cell(b, ex, cells)
                for seed in seeds:
                    cells.append(Cell(self.name, f"segment/{label}/{b.name}/s{seed}", "transfer",
                                      {"config": task["config"], "opts": list(task.get("opts", [])), "convert": conv,
                                       "backbone": b.name, "seed": seed, "task": label}, (conv,)))
        return cells

    def config(self, cell, study):
        """detectron2's config of the dataset with the cell's overrides, built when the study loads
        (the converted backbone's own settings are merged when the cell runs)."""
        from rdet.detection.train import build_cfg

        p = cell.params
        return build_cfg(resolve_config(study, p["config"]), list(p["opts"]) + ["SEED", str(p["seed"])])

    def run(self, cell, study):
        from rdet.detection import run as detection_run

        p = cell.params
        conv = read_record(Path(study.output_dir) / p["convert"] / RECORD_NAME)
        opts = list(p["opts"]) + ["SEED", str(p["seed"]), "MODEL.WEIGHTS", conv["weights"],
                                  "OUTPUT_DIR", str(cell.output_dir(study.output_dir))]
        detection_run(resolve_config(study, p["config"]), opts, resume=True, console=False,
                      backbone_config=conv["config"])

    def summary(self, rec):
        return f"mIoU {rec['mIoU']:.2f}" if rec.get("mIoU") is not None else "no mIoU (no test set)"


register_kind(Segment())


# The report's section for this kind's records (rdet.report.sections: the report loops over them).
@register_section("segmentation", 55, tasks=("segmentation",))
def _segmentation(records, ctx):
    from rdet.report.segmentation import segmentation_markdown

    md = segmentation_markdown(records)
    return SectionOutput("\n" + md) if md else None
