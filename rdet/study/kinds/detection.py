"""``detection``: every backbone x task through Detectron2, with the paper's COCO protocol::

    detection:
      - {name: coco, config: configs/coco_r50_fpn_1x.yaml, then_3x: configs/coco_r50_fpn_3x.yaml, top_k: 3}

Each backbone is converted once (``convert/<backbone>``, ``rdet.convert``: ResNets and timm's
ConvNeXt/Swin/ViT), then trained per task (``detect/<task>/<backbone>``). The converter's config
(pixel mean/std, the ResNet geometry or the timm backbone and arch) is merged over the task's
(``rdet.detection.run(backbone_config=...)``), so a config written for R50 runs the backbone it is
given; a C4 task with a backbone C4 cannot take is refused by ``rdet.detection``. ``then_3x``: once every backbone's 1x
run of the task finished, the top-``top_k`` robust backbones by box AP and the standard one go on
to 3x (``detect/<task>_3x/<backbone>``; Salman et al.'s COCO protocol). ``backbones: [eps0, l2_eps1]``
in a task: only those of the study's backbones (every one by default)."""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import List

from rdet.core.records import RECORD_NAME, iter_records, read_record, write_record
from rdet.study.base import Cell, TaskKind, backbone_weights, need, register_kind, resolve_config
from rdet.report.sections import SectionOutput, register_section

logger = logging.getLogger(__name__)


def convert_cell(b, ex, cells: List[Cell]) -> str:
    """The name of backbone ``b``'s conversion cell, added to ``cells`` unless the study has it
    already: detection and segmentation sections share one conversion per backbone."""
    conv = f"convert/{b.name}"
    if not ex.has_cell(conv) and not any(c.name == conv for c in cells):
        cells.append(Cell("convert", conv, "convert", {"weights": b.weights, "producer": b.producer},
                          (b.producer,) if b.producer else ()))
    return conv


class Convert(TaskKind):
    """A backbone converted to Detectron2 (cells made by the detection section)."""
    name = "convert"

    def run(self, cell, study):
        from rdet.convert import convert_to_detectron2

        out = cell.output_dir(study.output_dir)
        out.mkdir(parents=True, exist_ok=True)
        start = time.time()
        res = convert_to_detectron2(backbone_weights(study, cell.params), out / "backbone.pkl")
        write_record(out, {"task": "convert",
                           "backbone": {k: res.meta.get(k) for k in ("arch", "norm", "eps", "method", "source")},
                           "weights": str(res.weights), "config": str(res.config), "max_rel_error": res.max_rel_error,
                           "wall_time_s": time.time() - start})

    def summary(self, rec):
        err = rec.get("max_rel_error")
        return f"verified, max relative error {err:.1e}" if err is not None else "converted (not verified)"


class Detectron2Cells(TaskKind):
    """What the kinds that train through Detectron2 on a converted backbone share (detection,
    segmentation): a cell's config is its task's detectron2 config with the cell's overrides
    (``opts``, and ``SEED`` when the cell has a seed), built when the study loads; it runs with the
    backbone its conversion cell wrote (the converter's settings merged then, once it exists)."""

    def tasks(self, section, ex, cells: List[Cell]):
        """``(task, label, backbone, its conversion cell)`` for every task of ``section`` x each
        backbone it uses (``backbones: [...]`` or the study's); each backbone's conversion cell is
        added to ``cells`` once, shared with the other Detectron2 kinds."""
        for task in section or []:
            label = need(task, "name", f"a {self.section} task")
            need(task, "config", f"{self.section} task {label}")
            for b in ex.need_backbones(f"{self.section} task {label}", task.get("backbones")):
                yield task, label, b, convert_cell(b, ex, cells)

    @staticmethod
    def cell_opts(p) -> List[str]:
        return list(p["opts"]) + (["SEED", str(p["seed"])] if "seed" in p else [])

    def config(self, cell, study):
        from rdet.detection.train import build_cfg

        return build_cfg(resolve_config(study, cell.params["config"]), self.cell_opts(cell.params))

    def run(self, cell, study):
        from rdet.detection import run as detection_run

        p = cell.params
        conv = read_record(Path(study.output_dir) / p["convert"] / RECORD_NAME)
        opts = self.cell_opts(p) + ["MODEL.WEIGHTS", conv["weights"], "OUTPUT_DIR", str(cell.output_dir(study.output_dir))]
        detection_run(resolve_config(study, p["config"]), opts, resume=True, console=False,
                      backbone_config=conv["config"])


class Detect(Detectron2Cells):
    """Faster/Mask R-CNN per backbone x task through Detectron2; COCO's 1x -> 3x follow-ups."""
    name, section, order = "detect", "detection", 40

    def expand(self, section, ex):
        cells: List[Cell] = []
        for task, label, b, conv in self.tasks(section, ex, cells):
            cells.append(Cell(self.name, f"detect/{label}/{b.name}", "transfer",
                              {"config": task["config"], "opts": list(task.get("opts", [])), "convert": conv,
                               "backbone": b.name}, (conv,)))
        return cells

    def summary(self, rec):
        mask = f", mask AP {rec['mask_AP']:.2f}" if rec.get("mask_AP") is not None else ""
        return f"box AP {rec['box_AP']:.2f}{mask}" if rec.get("box_AP") is not None else "no AP (no test set)"

    def followups(self, study, failed):
        tasks = [t for t in study.raw.get("detection") or [] if t.get("then_3x")]
        blocked = {t["name"] for t in tasks if any(n.startswith(f"detect/{t['name']}/") for n in failed)}
        if blocked:
            logger.error(f"3x follow-ups of {', '.join(sorted(blocked))} not chosen: some of their 1x cells did not "
                         f"finish")
        cells = three_x_cells(study, exclude=blocked)
        if cells:
            logger.info(f"3x follow-ups (the best robust backbones by 1x box AP and the standard one): "
                        f"{', '.join(c.name for c in cells)}")
        return cells


def three_x_cells(study, exclude=()) -> List[Cell]:
    """The paper's COCO protocol: after every backbone's 1x run of a detection task with
    ``then_3x`` (except the tasks named in ``exclude``), the top-3 robust backbones by box AP and
    the standard one go on to 3x."""
    from rdet.detection.recipe import select_for_3x

    cells = []
    for task in study.raw.get("detection") or []:
        if not task.get("then_3x") or task["name"] in exclude:
            continue
        recs = [r for r in iter_records(Path(study.output_dir) / "detect" / task["name"])
                if r.get("task") == "detection"]
        chosen = {b.get("source") for b in select_for_3x(recs, int(task.get("top_k", 3)))}
        for c in study.cells:
            if c.kind == "detect" and c.name.startswith(f"detect/{task['name']}/"):
                conv = read_record(Path(study.output_dir) / c.params["convert"] / RECORD_NAME)
                if conv["backbone"].get("source") in chosen:
                    cells.append(Cell("detect", f"detect/{task['name']}_3x/{c.params['backbone']}", "followup",
                                      dict(c.params, config=task["then_3x"]), c.deps))
    return cells


register_kind(Convert())
register_kind(Detect())


# The report's section for this kind's records (rdet.report.sections: the report loops over them).
@register_section("detection", 50, tasks=("detection", "convert"))
def _detection(records, ctx):
    from rdet.report.markdown import detection_markdown, to_csv
    from rdet.report.plots import plot_detection
    from rdet.report.tables import NOISE_FLOOR_AP, detection_rows

    rows = detection_rows(records)
    if not rows:
        return None
    return SectionOutput("\n## Detection and instance segmentation (Figure 4 style)\n"
                         "Paper columns: its Figure 4 (VOC R50-C4; COCO R50-FPN 3x); — for other datasets. A row with "
                         f"an AP below {NOISE_FLOOR_AP:g} is a wiring check (the pipeline ran), not a comparison.\n\n"
                         + detection_markdown(rows), {"detection.csv": to_csv(rows)}, plot_detection(rows, ctx.out))
