"""Study runner: a declarative grid of cells, each of a registered task kind (``rdet.study.base``;
built-in: pretraining, transfer, conversion, detection, selection, commands)."""
from rdet.study.base import TASK_KINDS, Backbone, Cell, Expansion, Study, TaskKind, get_kind, register_kind
from rdet.study.runner import StudyError, followup_cells, run_cell, run_study
from rdet.study.spec import load_study

__all__ = ["TASK_KINDS", "TaskKind", "register_kind", "get_kind", "Backbone", "Expansion", "run_cell", "run_study",
           "followup_cells", "load_study", "Cell", "Study", "StudyError"]
