"""Study runner: a declarative grid of pretraining, transfer, conversion and detection cells."""
from rdet.study.cells import CELL_KINDS, run_cell
from rdet.study.runner import StudyError, followup_cells, run_study
from rdet.study.spec import Cell, Study, load_study

__all__ = ["CELL_KINDS", "run_cell", "run_study", "followup_cells", "load_study", "Cell", "Study", "StudyError"]
