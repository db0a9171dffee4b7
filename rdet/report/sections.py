"""The report's sections: a registry, so that a task kind's results reach the report by the kind
registering its own section (detectron2's hooks, timm's registry: the framework calls what was
registered), and :func:`rdet.report.build_report` loops over them without naming any task. Each
built-in kind registers its section in its own module (``rdet/study/kinds/``: importing
``rdet.study`` registers them all); the two sections that belong to no kind (the catalog models
the records used, and results of backbones of unknown eps) are registered here.

A section is a function ``build(records, ctx) -> SectionOutput | None``: ``records`` are every
readable record of the study (a section picks those it understands, e.g. by the fields they
carry), ``ctx`` a :class:`ReportContext` (where the report goes, what the study folder is).
``None`` means the section has nothing to show. The built-in sections follow.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

from rdet.report.markdown import catalog_markdown, unknown_eps_markdown
from rdet.report.tables import catalog_rows, unknown_eps_rows


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
    tasks: Tuple[str, ...] = ()  # the record ``task`` values this section shows (none: it reads across tasks)


REPORT_SECTIONS: Dict[str, Section] = {}


def register_section(name: str, order: int = 50, tasks: Tuple[str, ...] = ()):
    """Decorator: register ``build(records, ctx)`` as report section ``name`` (refused if taken),
    showing the records whose ``task`` is in ``tasks``."""
    def wrap(build):
        if name in REPORT_SECTIONS:
            raise ValueError(f"report section {name!r} is registered already")
        REPORT_SECTIONS[name] = Section(name, order, build, tuple(tasks))
        return build

    return wrap


def unshown_tasks(records: List[Dict]) -> Dict[str, int]:
    """``{task: count}`` of the records that no registered section shows (their kind's module,
    which registers its section, was not imported): the report names them instead of dropping
    them silently."""
    shown = {t for s in REPORT_SECTIONS.values() for t in s.tasks}
    out: Dict[str, int] = {}
    for r in records:
        if r.get("task") not in shown:
            out[r.get("task")] = out.get(r.get("task"), 0) + 1
    return out


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






@register_section("unknown_eps", 90)
def _unknown_eps(records, ctx):
    rows = unknown_eps_rows(records)
    if not rows:
        return None
    return SectionOutput("\n## Results from source models of unknown eps\n"
                         "Their backbone's robustness is not recorded, so they count as neither standard nor robust "
                         "above.\n\n" + unknown_eps_markdown(rows))



