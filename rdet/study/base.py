"""What the study runner and the task kinds share: cells, studies, and the registry of task kinds.

A *task kind* (:class:`TaskKind`) is everything the runner knows about one kind of cell: which
section of a study file it reads and how that section expands into cells (:meth:`TaskKind.expand`),
how one cell runs (:meth:`TaskKind.run`, which leaves ``result.json`` in the cell's folder when the
cell is complete and resumes a half-done one), the console summary of its record
(:meth:`TaskKind.summary`) and the cells it adds once the grid has run (:meth:`TaskKind.followups`,
e.g. COCO's 1x -> 3x). The runner (``rdet.study.runner``) names no task: adding a kind is one
module that calls :func:`register_kind` (the built-in ones are in ``rdet.study.kinds``).
"""
from __future__ import annotations

import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple

from rdet.core.errors import ConfigError

logger = logging.getLogger(__name__)

# The order in which the runner runs cells: every cell of one stage before any of the next.
STAGES = ("prepare", "pretrain", "convert", "transfer", "followup")


@dataclass
class Cell:
    kind: str  # the name of a registered TaskKind
    name: str  # unique, also the output sub-folder
    stage: str  # one of STAGES
    params: Dict[str, Any] = field(default_factory=dict)
    deps: Tuple[str, ...] = ()  # names of the cells whose records or weights this one reads

    def output_dir(self, root: Path) -> Path:
        return Path(root) / self.name


@dataclass
class Study:
    path: Path
    output_dir: Path
    executor: str
    slurm: Dict[str, Any]
    cells: List[Cell]
    raw: Dict[str, Any]  # the study file as read (each kind reads its own section from it)

    @property
    def description(self) -> str:
        return str(self.raw.get("description", "")).strip()


@dataclass
class Backbone:
    """A backbone of the study, for the kinds that transfer from backbones: existing weights (a
    catalog name or a file) or the ``model_final.pth`` of the cell ``producer``. ``arch``: its
    registry architecture when the study says (a torchvision or a timm family arch alike)."""
    name: str
    weights: Optional[str] = None
    producer: Optional[str] = None
    arch: Optional[str] = None


@dataclass
class Expansion:
    """The state of one study file's expansion, handed to each kind's :meth:`TaskKind.expand` in
    turn (by ``order``): the cells so far and the backbones the earlier sections provided."""
    path: Path
    cells: List[Cell] = field(default_factory=list)
    backbones: List[Backbone] = field(default_factory=list)

    def need_backbones(self, section: str, names: Optional[List[str]] = None) -> List[Backbone]:
        """The study's backbones, or the ``names`` a task chooses (``backbones: [eps0, l2_eps1]`` in a
        detection or segmentation task, whose runs cost minutes where a classification cell costs
        seconds); a name the study lacks is one line."""
        if not self.backbones:
            raise ConfigError(f"{self.path}: {section} needs backbones (a pretrain or backbones section)")
        if names is None:
            return self.backbones
        known = {b.name for b in self.backbones}
        if not isinstance(names, list) or not names or not set(names) <= known:
            raise ConfigError(f"{self.path}: {section}: backbones must be a list of the study's backbones "
                              f"({', '.join(sorted(known))}); got {names!r}")
        return [b for b in self.backbones if b.name in names]

    def has_cell(self, name: str) -> bool:
        return any(c.name == name for c in self.cells)


class TaskKind:
    """One kind of study cell. Subclasses set ``name`` (``Cell.kind`` of its cells) and, when the
    kind reads a section of the study file, ``section`` and ``order`` (sections expand in
    increasing ``order``: the ones that provide backbones first)."""

    name: str = ""
    section: Optional[str] = None  # the study-file section this kind expands (None: none)
    order: int = 50

    def expand(self, section: Any, ex: Expansion) -> List[Cell]:
        """The cells of this kind's ``section`` (may add to ``ex.backbones``); one-line
        ConfigError for a malformed section, before anything runs."""
        return []

    def config(self, cell: Cell, study: Study):
        """The cell's config, built the one way its CLI builds one (defaults -> file -> overrides
        -> every key's rule: :func:`rdet.config.build_config`), or ``None`` for a kind without one.
        The study calls it for every cell when it loads, so a mistyped key or an out-of-range value
        fails before any cell runs; :meth:`run` runs what it returns."""
        return None

    def run(self, cell: Cell, study: Study) -> None:
        raise NotImplementedError(f"task kind {self.name} runs no cells")

    def summary(self, rec: Mapping[str, Any]) -> str:
        """The key numbers of one of its records, for the console."""
        if isinstance(rec.get("value"), (int, float)):
            return f"{rec.get('metric', 'value')} {rec['value']:.2f}"
        return "finished"

    def followups(self, study: Study, failed: Mapping[str, str]) -> List[Cell]:
        """Cells to run after every stage of the grid (``failed``: cell name -> why it did not
        finish); logs why it chose them or why it chose none."""
        return []


def need(d, key: str, where: str, path=None):
    """``d[key]``, or a one-line ConfigError naming what lacks it (for the kinds' ``expand``)."""
    if not isinstance(d, dict) or key not in d:
        raise ConfigError(f"{path + ': ' if path else ''}study: {where} needs a '{key}' entry")
    return d[key]


def mapping_section(section: Any, keys, name: str, path) -> Dict[str, Any]:
    """A study section that is a mapping of known ``keys``; one-line ConfigError otherwise."""
    if not isinstance(section, dict):
        raise ConfigError(f"{path}: the {name} section is a mapping ({', '.join(sorted(keys))})")
    unknown = set(section) - set(keys)
    if unknown:
        raise ConfigError(f"{path}: unknown {name} entries {', '.join(sorted(unknown))}")
    return section


TASK_KINDS: Dict[str, TaskKind] = {}


def register_kind(kind: TaskKind) -> TaskKind:
    """Add ``kind`` to the registry (refused if its name or section is taken); returns it."""
    if not kind.name:
        raise ValueError(f"{type(kind).__name__}: a task kind needs a name")
    if kind.name in TASK_KINDS:
        raise ValueError(f"task kind {kind.name!r} is registered already ({type(TASK_KINDS[kind.name]).__name__})")
    if kind.section and any(k.section == kind.section for k in TASK_KINDS.values()):
        raise ValueError(f"study section {kind.section!r} is expanded by another task kind already")
    TASK_KINDS[kind.name] = kind
    return kind


def unregister_kind(name: str) -> None:
    TASK_KINDS.pop(name, None)


def get_kind(name: str) -> TaskKind:
    try:
        return TASK_KINDS[name]
    except KeyError:
        raise ConfigError(f"unknown study task kind {name!r}; known: {', '.join(sorted(TASK_KINDS))}") from None


def sections() -> Dict[str, TaskKind]:
    """``{study section: kind}`` in expansion order."""
    kinds = sorted((k for k in TASK_KINDS.values() if k.section), key=lambda k: k.order)
    return {k.section: k for k in kinds}


def kinds_table() -> List[Tuple[str, str, str, str]]:
    """``(section, kind, module, what)`` for every registered kind, sections in expansion order
    and section-less kinds (cells other kinds make) last: ``python -m rdet study --kinds``. Read
    from the registry, so a new kind's module is all that changes."""
    def what(k: TaskKind) -> str:
        doc = type(k).__doc__ or sys.modules[type(k).__module__].__doc__ or ""
        return " ".join(doc.strip().split("\n\n")[0].split()).split("::")[0].replace("``", "")

    ordered = sorted(TASK_KINDS.values(), key=lambda k: (k.section is None, k.order, k.name))
    return [(k.section or "-", k.name, type(k).__module__, what(k)) for k in ordered]


def resolve_config(study: Study, path: Optional[str]) -> Optional[str]:
    """A config path in a study: as given if it exists (relative to the working directory), else
    relative to the study file, else to the rdet package (so ``configs/...`` works from anywhere,
    installed or not: the configs ship in ``rdet/configs``)."""
    from rdet.config import CONFIG_DIR

    if path is None:
        return None
    p = Path(path)
    if p.is_absolute() or p.exists():
        return str(p)
    for base in (study.path.parent, CONFIG_DIR.parent):
        if (base / p).exists():
            return str(base / p)
    return str(p)


def backbone_weights(study: Study, params: Mapping[str, Any]) -> str:
    """The weights a transfer cell starts from: its producer cell's ``model_final.pth``, or the
    backbone's own weights (a catalog name or a file)."""
    if params.get("producer"):
        return str(Path(study.output_dir) / params["producer"] / "model_final.pth")
    return params["weights"]
