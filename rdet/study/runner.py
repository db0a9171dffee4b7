"""Running a study: stage by stage, skipping finished cells, locally or through submitit.

Stages run in order (prepare -> pretrain -> convert -> transfer/detect -> follow-ups); within a
stage, cells are independent, so submitit may run them in parallel as separate jobs (each job may
itself start torchrun). Interrupting is safe at any point: a cell is finished exactly when its
``result.json`` exists (records are written atomically and last), and a half-done cell resumes
from its own checkpoint.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import List

from rdet.records import has_record, iter_records
from rdet.study.cells import run_cell
from rdet.study.spec import STAGES, Cell, Study, load_study


def _log(msg: str) -> None:
    print(f"[study {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def run_cell_job(study_path: str, cell_name: str) -> str:
    """What a submitit job runs (picklable: it reloads the study in the job's process)."""
    study = load_study(study_path)
    cell = next(c for c in study.cells if c.name == cell_name)
    run_cell(cell, study)
    return cell_name


def _executor(study: Study):
    import submitit

    folder = Path(study.output_dir) / "submitit"
    if study.executor == "submitit_local":
        ex = submitit.LocalExecutor(folder=str(folder))
        ex.update_parameters(timeout_min=int(study.slurm.get("timeout_min", 60)))
    else:
        ex = submitit.AutoExecutor(folder=str(folder))
        ex.update_parameters(**{f"slurm_{k}" if k not in ("timeout_min", "gpus_per_node", "nodes", "cpus_per_task",
                                                          "tasks_per_node", "mem_gb") else k: v
                                for k, v in study.slurm.items()})
    return ex


def run_stage(study: Study, cells: List[Cell], done_before: int, total: int) -> None:
    todo = [c for c in cells if not has_record(c.output_dir(study.output_dir))]
    for c in cells:
        if c not in todo:
            _log(f"skip {c.name} (finished)")
    if study.executor == "local":
        for i, c in enumerate(todo):
            _log(f"cell {done_before + i + 1}/{total}: {c.kind} {c.name}")
            run_cell(c, study)
        return
    ex = _executor(study)
    jobs = [(c, ex.submit(run_cell_job, str(study.path), c.name)) for c in todo]
    for c, job in jobs:
        _log(f"submitted {c.kind} {c.name} as job {job.job_id}")
    for c, job in jobs:
        job.result()  # re-raises the cell's error
        _log(f"finished {c.name}")


def followup_cells(study: Study) -> List[Cell]:
    """The paper's COCO protocol: after every backbone's 1x run of a detection task with
    ``then_3x``, the top-3 robust backbones by box AP and the standard one go on to 3x."""
    from rdet.detection.recipe import select_for_3x

    cells = []
    for task in study.detection:
        if not task.get("then_3x"):
            continue
        recs = [r for r in iter_records(Path(study.output_dir) / "detect" / task["name"]) if r.get("task") == "detection"]
        chosen = {b.get("source") for b in select_for_3x(recs, int(task.get("top_k", 3)))}
        for c in study.cells:
            if c.kind == "detect" and c.name.startswith(f"detect/{task['name']}/"):
                conv = Path(study.output_dir) / c.params["convert"] / "result.json"
                from rdet.records import read_record

                if read_record(conv)["backbone"].get("source") in chosen:
                    cells.append(Cell("detect", f"detect/{task['name']}_3x/{c.params['backbone']}", "followup",
                                      dict(c.params, config=task["then_3x"]), c.deps))
    return cells


def run_study(path: str | Path) -> Study:
    study = load_study(path)
    _log(f"{study.path}: {len(study.cells)} cells (+ follow-ups), output in {study.output_dir}, "
         f"executor {study.executor}")
    if study.description:
        print(study.description, flush=True)
    Path(study.output_dir).mkdir(parents=True, exist_ok=True)
    done = 0
    for stage in STAGES[:-1]:
        cells = [c for c in study.cells if c.stage == stage]
        run_stage(study, cells, done, len(study.cells))
        done += len(cells)
    follow = followup_cells(study)
    if follow:
        run_stage(study, follow, 0, len(follow))
    return study
