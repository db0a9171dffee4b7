"""The report's sections: a registry, so that a task kind's results reach the report by the kind
registering its own section (detectron2's hooks, timm's registry: the framework calls what was
registered), and :func:`rdet.report.build_report` loops over them without naming any task.

A section is a function ``build(records, ctx) -> SectionOutput | None``: ``records`` are every
readable record of the study (a section picks those it understands, e.g. by the fields they
carry), ``ctx`` a :class:`ReportContext` (where the report goes, what the study folder is).
``None`` means the section has nothing to show. The built-in sections follow.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional

from rdet.report.markdown import (catalog_markdown, classification_markdown, dataset_markdown, detection_markdown,
                                  pretrain_markdown, robustness_markdown, table1_markdown, to_csv,
                                  unknown_eps_markdown)
from rdet.report.plots import plot_detection, plot_eps_curves
from rdet.report.robustness import robustness_rows
from rdet.report.tables import (NOISE_FLOOR_AP, catalog_rows, classification_rows, dataset_rows, detection_rows,
                                eps_curves, paper_curves, pretrain_rows, table1_rows, unknown_eps_rows)


@dataclass
class ReportContext:
    runs_dir: Path  # the folder whose records are read
    out: Path  # where report.md, the CSV files and the plots go


@dataclass
class SectionOutput:
    markdown: str  # the section, its "## " heading first
    csv: Dict[str, str] = field(default_factory=dict)  # file name -> CSV text, written beside report.md
    plots: List[Path] = field(default_factory=list)  # PNG files the section wrote into ctx.out


@dataclass(frozen=True)
class Section:
    name: str
    order: int  # sections appear in increasing order
    build: Callable[[List[Dict], ReportContext], Optional[SectionOutput]]


REPORT_SECTIONS: Dict[str, Section] = {}


def register_section(name: str, order: int = 50):
    """Decorator: register ``build(records, ctx)`` as report section ``name`` (refused if taken)."""
    def wrap(build):
        if name in REPORT_SECTIONS:
            raise ValueError(f"report section {name!r} is registered already")
        REPORT_SECTIONS[name] = Section(name, order, build)
        return build

    return wrap


def unregister_section(name: str) -> None:
    REPORT_SECTIONS.pop(name, None)


def ordered_sections() -> List[Section]:
    return sorted(REPORT_SECTIONS.values(), key=lambda s: (s.order, s.name))


@register_section("catalog", 10)
def _catalog(records, ctx):
    rows = catalog_rows(records)
    if not rows:
        return None
    return SectionOutput("\n## Catalog models and their published numbers\n"
                         "The paper's clean ImageNet top-1 (Tables 3, 3b, 4) and, for models RobustBench lists, its "
                         "clean and AutoAttack accuracy (Linf 4/255, its 5,000-image ImageNet subset).\n\n"
                         + catalog_markdown(rows))


@register_section("pretrain", 20)
def _pretrain(records, ctx):
    rows = pretrain_rows(records)
    if not rows:
        return None
    return SectionOutput("\n## Source models (pretraining)\n"
                         "Paper column: its Tables 3, 3b and 4 (clean ImageNet accuracy), for ImageNet runs.\n\n"
                         + pretrain_markdown(rows))


@register_section("classification", 30)
def _classification(records, ctx):
    rows = classification_rows(records)
    if not rows:
        return None
    md = ("\n## Table 1: best transfer accuracy over architectures, eps and lr\n"
          "L2 models at full resolution. Paper columns: its Table 1; — where the paper has no such dataset.\n\n"
          + table1_markdown(table1_rows(rows))
          + "\n## Transfer to classification (Table 1 style: best over eps and lr; mean [min, max] over seeds)\n"
          "Paper columns: its Table 8/9 (L2), 10/11 (32 px), 6 (Linf) or 7 (other architectures) for the same "
          "dataset, mode, architecture and metric; — where the paper has no such entry.\n\n"
          + classification_markdown(rows)
          + "\n### Datasets\nThe paper's Table 5 beside what each run's data really was.\n\n"
          + dataset_markdown(dataset_rows(records)))
    curves = eps_curves(records)
    return SectionOutput(md, {"classification.csv": to_csv(rows)},
                         plot_eps_curves(curves, paper_curves(curves), ctx.out))


@register_section("robustness", 40)
def _robustness(records, ctx):
    rows = robustness_rows(records)
    if not rows:
        return None
    return SectionOutput("\n## Robust accuracy (rdet.evaluate): PGD and AutoAttack, never pooled\n"
                         "One row per attack and its settings; AutoAttack − PGD against the strongest PGD of the same "
                         "model, data and eps. RobustBench's numbers beside its models; Δ only for rows measured as "
                         "RobustBench does.\n\n" + robustness_markdown(rows), {"robustness.csv": to_csv(rows)})


@register_section("detection", 50)
def _detection(records, ctx):
    rows = detection_rows(records)
    if not rows:
        return None
    return SectionOutput("\n## Detection and instance segmentation (Figure 4 style)\n"
                         "Paper columns: its Figure 4 (VOC R50-C4; COCO R50-FPN 3x); — for other datasets. A row with "
                         f"an AP below {NOISE_FLOOR_AP:g} is a wiring check (the pipeline ran), not a comparison.\n\n"
                         + detection_markdown(rows), {"detection.csv": to_csv(rows)}, plot_detection(rows, ctx.out))


@register_section("unknown_eps", 90)
def _unknown_eps(records, ctx):
    rows = unknown_eps_rows(records)
    if not rows:
        return None
    return SectionOutput("\n## Results from source models of unknown eps\n"
                         "Their backbone's robustness is not recorded, so they count as neither standard nor robust "
                         "above.\n\n" + unknown_eps_markdown(rows))


@register_section("segmentation", 55)
def _segmentation(records, ctx):
    from rdet.report.segmentation import segmentation_markdown

    md = segmentation_markdown(records)
    return SectionOutput("\n" + md) if md else None


@register_section("selection", 60)
def _selection(records, ctx):
    """``rdet select``'s ranking (its cells' records, one table per target dataset)."""
    from collections import defaultdict

    from rdet.select.ranking import markdown, ranked_rows

    groups = defaultdict(list)
    for r in records:
        if r.get("task") == "select" and r.get("val_value") is not None:
            groups[(r.get("dataset"), tuple(r.get("classes") or ()), r.get("data_note"))].append(r)
    if not groups:
        return None
    parts = [markdown(ranked_rows(recs)).replace("# Backbone ranking", "## Backbone ranking (rdet select)", 1)
             .replace("\n## Transferability", "\n### Transferability") for recs in groups.values()]
    return SectionOutput("\n" + "\n".join(parts))


@register_section("transferability", 65)
def _transferability(records, ctx):
    """Each estimator's agreement with the fine-tuned (or validation) ranking, from the
    ``estimators.json`` / ``against_paper.json`` that ``rdet select`` leaves in its folder."""
    from rdet.report.transferability import section, selection_records

    folders = sorted({p.parent for name in ("estimators.json", "against_paper.json")
                      for p in ctx.runs_dir.rglob(name) if not p.is_relative_to(ctx.out)})
    recs = [r for folder in folders for r in selection_records(folder)]
    md = section(recs) if recs else ""
    return SectionOutput("\n" + md) if md else None
