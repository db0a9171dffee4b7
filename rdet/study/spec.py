"""Study files: a declarative grid expanded into cells.

A study YAML has the runner's own keys and one section per task kind (all optional, but at least
one cell)::

    output_dir: output/my_study
    executor: local            # local | submitit_local | slurm   (submitit for the last two)
    slurm:                     # one job per cell (executor slurm; submitit_local reads timeout_min)
      partition: gpu           # any other key k is sbatch's --k (account, qos, constraint, ...)
      nodes: 1                 # machines per cell
      tasks_per_node: 1        # >1: one process per task, torchrun's RANK/WORLD_SIZE/... exported
      gpus_per_node: 1         #     (pretrain/classify cells run DDP over them; set = GPUs)
      cpus_per_task: 8
      mem_gb: 64
      timeout_min: 720         # at the limit (or on preemption) a cell checkpoints and requeues itself
      signal_delay_s: 120      # ... warned this many seconds before the limit (Slurm's --signal)
      max_requeues: 10         # ... at most this many times (then the cell fails)
    pretrain: {...}            # rdet.study.kinds.pretrain (also: backbones)
    backbones: [...]
    classification: {...}      # rdet.study.kinds.transfer
    detection: [...]           # rdet.study.kinds.detection (then_3x: the paper's COCO protocol)
    commands: [...]            # rdet.study.kinds.commands
    select: {...}              # rdet.study.kinds.select
    robustness: {...}          # rdet.study.kinds.robustness (PGD, AutoAttack)

Each section is expanded by the task kind registered for it (``rdet.study.base.register_kind``;
the built-in kinds and their sections: ``rdet.study.kinds``), in the kinds' ``order``: the
sections that provide backbones (``pretrain``, ``backbones``) before the ones that use them.

Cells get deterministic output folders under ``output_dir``, so a restarted study finds what is
done (its ``result.json``) and what is half done (its own checkpoint, resumed). A cell's ``deps``
name the cells whose records it reads (its backbone's pretraining, its conversion); the runner
does not run a cell whose deps did not finish.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List

import yaml

import rdet.study.kinds  # noqa: F401  (registers the built-in task kinds)
from rdet.core.errors import ConfigError
from rdet.study.base import STAGES, Cell, Expansion, Study, sections

__all__ = ["STAGES", "Cell", "Study", "load_study", "expand"]

RUNNER_KEYS = {"output_dir", "executor", "slurm", "name", "description"}
EXECUTORS = ("local", "submitit_local", "slurm")


def load_study(path: str | Path, check: bool = True) -> Study:
    """The study in ``path``, every cell's config built and checked (:func:`check_cell_configs`).
    ``check=False`` is for a cell's job: its driver checked the whole study before it submitted
    anything, and the job's cell builds its own config when it runs (the same checks). Re-checking
    every other cell in every job would cost each job the imports of every kind (detectron2 for a
    command cell) and a study of n cells n x n config builds."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such study file")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: a study is a YAML mapping")
    known = RUNNER_KEYS | set(sections())
    unknown = set(raw) - known
    if unknown:
        raise ConfigError(f"{path}: unknown study section(s) {', '.join(sorted(unknown))}; "
                          f"known: {', '.join(sorted(known))}")
    executor = raw.get("executor", "local")
    if executor not in EXECUTORS:
        raise ConfigError(f"{path}: executor must be local, submitit_local or slurm, not {executor!r}")
    slurm = raw.get("slurm", {}) or {}
    if not isinstance(slurm, dict):
        raise ConfigError(f"{path}: slurm settings are a mapping (partition: ..., timeout_min: ...)")
    out = Path(raw.get("output_dir", Path("output") / path.stem))
    cells = expand(raw, path)
    if not cells:
        raise ConfigError(f"{path}: the study has no cells")
    names = [c.name for c in cells]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise ConfigError(f"{path}: duplicate cell names {', '.join(sorted(dup))}")
    bad = [c.name for c in cells if c.stage not in STAGES[:-1]]
    if bad:
        raise ConfigError(f"{path}: cells {', '.join(bad)} have a stage outside {', '.join(STAGES[:-1])}")
    study = Study(path, out, executor, slurm, cells, raw)
    if check:
        check_cell_configs(study)
    return study


def check_cell_configs(study: Study) -> None:
    """Build every cell's config (:meth:`TaskKind.config`) before any cell runs: a mistyped key or
    an out-of-range value in any cell is one line naming the cell, and nothing is written."""
    from rdet.core.errors import RdetError
    from rdet.study.base import get_kind

    for cell in study.cells:
        try:
            get_kind(cell.kind).config(cell, study)
        except RdetError as e:
            raise ConfigError(f"{study.path}: cell {cell.name}: {e}") from None


def expand(raw: Dict[str, Any], path: Path) -> List[Cell]:
    """Every section's cells, each section by its task kind, in the kinds' order."""
    ex = Expansion(Path(path))
    for section, kind in sections().items():
        if raw.get(section) is not None:
            ex.cells += kind.expand(raw[section], ex)
    return ex.cells
