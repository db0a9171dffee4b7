"""Running a study: stage by stage, skipping finished cells, locally or through submitit.

Stages run in order (prepare -> pretrain -> convert -> transfer/detect -> follow-ups); within a
stage, cells are independent, so submitit may run them in parallel as separate jobs. A cell is
finished exactly when its ``result.json`` is a readable record (records are written atomically
and last); an unreadable one is named and the cell runs again. Interrupting is safe at any point:
a half-done cell resumes from its own checkpoint, a submitted Slurm job keeps running and a
restarted driver waits for it (``jobs.reattach``), and a per-cell lock makes sure that no two
processes ever run the same cell at once. A Slurm job that reaches its time limit or is
preempted checkpoints and requeues itself (``jobs.CellJob``); the driver follows the same job id.

The runner names no task: how a cell runs, its console summary and the cells added after the grid
(COCO's 3x) come from its task kind (``rdet.study.base.TaskKind``; built-in: ``rdet.study.kinds``).

A failed cell does not stop the others: cells that need it (``Cell.deps``) are not run, the rest
are, and the study ends with one line naming every cell that did not finish and its log.

Console: a few lines per cell (``cell 5/21 classify ...: running``, ``done in 40 s: top1 91.2%``;
``every_s`` heartbeats while a local cell runs); each cell's whole output goes to its own
``log.txt`` (``rdet.study.logs``).
"""
from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import time
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Tuple

from rdet.core.collector import defer_collection
from rdet.core.errors import RdetError, error_message, release_frames
from rdet.core.records import RECORD_NAME, has_record, read_record, record_problem, write_record
from rdet.study import jobs
from rdet.study.base import STAGES, TASK_KINDS, Cell, Study, get_kind
from rdet.study.logs import LOG_NAME, Heartbeat, cell_log, setup_console
from rdet.study.spec import load_study

logger = logging.getLogger(__name__)


class StudyError(RdetError):
    """Cells of a study did not finish (the message names them and their logs)."""


def summary(cell: Cell, rec: Dict) -> str:
    """The key numbers of a cell's record, for the console (its task kind says which)."""
    return get_kind(cell.kind).summary(rec)


def run_cell(cell: Cell, study: Study) -> None:
    get_kind(cell.kind).run(cell, study)


@contextlib.contextmanager
def cell_lock(cell_dir: Path) -> Iterator[None]:
    """Exclusive lock on a cell (``<cell>/.lock``, released by the OS if the holder dies)."""
    cell_dir.mkdir(parents=True, exist_ok=True)
    with open(cell_dir / ".lock", "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            logger.info(f"{cell_dir}: another process runs this cell; waiting for it")
            fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def execute_cell(cell: Cell, study: Study, label: str = "", heartbeat_s: float = 0.0) -> Dict:
    """Run one cell under its lock with its output in its ``log.txt``; its record. A cell that
    another process finished meanwhile is not run again."""
    out = cell.output_dir(study.output_dir)
    with cell_lock(out):
        if not has_record(out):
            log = out / LOG_NAME
            with cell_log(log, f"{cell.kind} {cell.name}") as console:
                with Heartbeat(label or cell.name, log, console, heartbeat_s):
                    run_cell(cell, study)
        return read_record(out / RECORD_NAME)


def find_cell(study: Study, name: str) -> Cell:
    for c in study.cells:
        if c.name == name:
            return c
    return next(c for c in followup_cells(study) if c.name == name)


def run_cell_job(study_path: str, cell_name: str) -> Dict:
    """What a submitit job runs (picklable: it reloads the study in the job's process, so a kind
    must be registered on import of ``rdet.study``). Returns ``{"status": "done"|"failed",
    "message"}``; the traceback is in the cell's log. In a job of several tasks each task is one
    process of the cell's distributed run (torchrun's variables exported), and the cell's lock is
    left out. The cell's record gets ``requeues`` (0 when the job ran through; and Slurm's
    ``SLURM_RESTART_COUNT``), so a record from a job says how often it was requeued."""
    import submitit

    defer_collection()  # until the cell's task starts its work (rdet.core.collector)
    study = load_study(study_path, check=False)  # checked by the driver; the cell's run checks its own
    cell = find_cell(study, cell_name)
    out = cell.output_dir(study.output_dir)
    env = submitit.JobEnvironment()
    try:
        if env.num_tasks > 1:
            submitit.helpers.TorchDistributedEnvironment().export()
            with cell_log(out / LOG_NAME, f"{cell.kind} {cell.name}"):
                run_cell(cell, study)
        else:
            execute_cell(cell, study)
        if env.global_rank == 0:
            _note_requeues(out)
    except Exception as e:  # noqa: BLE001  (reported to the driver as one line)
        return {"status": "failed", "message": _one_line(e)}
    return {"status": "done", "message": ""}


def _note_requeues(out: Path) -> None:
    n = jobs.requeue_count(out)
    if has_record(out):
        rec = read_record(out / RECORD_NAME)
        if rec.get("requeues") != n:
            rec["requeues"] = n
            rec["slurm_restart_count"] = int(os.environ.get("SLURM_RESTART_COUNT", 0) or 0)
            write_record(out, rec)


def _one_line(e: BaseException) -> str:
    text = error_message(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0]}" if text and not isinstance(e, RdetError) else (text[0] if text else
                                                                                             type(e).__name__)


class _Run:
    """The state of one run of a study: numbering, failures, console lines."""

    def __init__(self, study: Study, heartbeat_s: float):
        self.study, self.heartbeat_s = study, heartbeat_s
        self.order = [c for stage in STAGES[:-1] for c in study.cells if c.stage == stage]
        self.number = {c.name: i + 1 for i, c in enumerate(self.order)}
        self.failed: Dict[str, str] = {}
        self.ex = None
        self.grace_s = jobs.grace_s(study)

    def label(self, cell: Cell) -> str:
        if cell.name in self.number:
            return f"cell {self.number[cell.name]}/{len(self.order)} {cell.kind} {cell.name}"
        return f"follow-up {cell.kind} {cell.name}"

    def todo(self, cells: List[Cell]) -> List[Cell]:
        """The cells to run now; logs the finished (skipped) and the blocked ones."""
        out = []
        for c in cells:
            d = c.output_dir(self.study.output_dir)
            if has_record(d):
                logger.info(f"{self.label(c)}: finished before, skipped")
                continue
            problem = record_problem(d)
            if problem:
                logger.warning(f"{self.label(c)}: {problem}; running the cell again")
            missing = [x for x in c.deps if x in self.failed or not has_record(Path(self.study.output_dir) / x)]
            if missing:
                self.failed[c.name] = f"not run: needs {', '.join(missing)}"
                logger.error(f"{self.label(c)}: not run, it needs {', '.join(missing)}, which did not finish")
                continue
            out.append(c)
        return out

    def done(self, cell: Cell, status: Dict, seconds: Optional[float] = None) -> None:
        d = cell.output_dir(self.study.output_dir)
        if status.get("status") == "done" and not has_record(d):
            status = {"status": "failed", "message": record_problem(d) or f"the cell wrote no {RECORD_NAME}"}
        if status.get("status") != "done":
            self.failed[cell.name] = status["message"]
            logger.error(f"{self.label(cell)}: failed: {status['message']} (log: {d / LOG_NAME})")
            return
        rec = read_record(d / RECORD_NAME)
        took = seconds if seconds is not None else rec.get("wall_time_s")
        requeued = f" after {rec['requeues']} requeue(s)" if rec.get("requeues") else ""
        logger.info(f"{self.label(cell)}: done{f' in {took:.0f} s' if took is not None else ''}{requeued}: "
                    f"{summary(cell, rec)}")

    def run_local(self, cells: List[Cell]) -> None:
        for c in cells:
            logger.info(f"{self.label(c)}: running (log: {c.output_dir(self.study.output_dir) / LOG_NAME})")
            start = time.time()
            try:
                execute_cell(c, self.study, self.label(c), self.heartbeat_s)
                status = {"status": "done"}
            except Exception as e:  # noqa: BLE001  (the traceback is in the cell's log)
                status = {"status": "failed", "message": _one_line(e)}
                release_frames(e)  # the next cell does not wait on this one's loader workers
            self.done(c, status, time.time() - start)

    def run_jobs(self, cells: List[Cell], poll_s: float = 1.0) -> None:
        running: Dict[str, Tuple[Cell, object]] = {}
        for c in cells:
            d = c.output_dir(self.study.output_dir)
            job = jobs.reattach(d)
            if job is not None:
                logger.info(f"{self.label(c)}: its job {job.job_id} is still queued or running; waiting for it")
            else:
                job = jobs.submit(self.ex, jobs.CellJob(run_cell_job, d, self.grace_s), d, str(self.study.path), c.name)
                logger.info(f"{self.label(c)}: submitted as job {job.job_id} (log: {d / LOG_NAME})")
            running[c.name] = (c, job)
        requeues = {name: jobs.requeue_count(c.output_dir(self.study.output_dir)) for name, (c, _) in running.items()}
        while running:
            states = jobs.squeue_states([j.job_id for _, j in running.values() if type(j).__name__ == "SlurmJob"])
            for name, (c, job) in list(running.items()):
                n = jobs.requeue_count(c.output_dir(self.study.output_dir))
                if n != requeues[name]:
                    requeues[name] = n
                    logger.info(f"{self.label(c)}: job {job.job_id} requeued ({n} so far): it resumes from its "
                                f"checkpoint")
                if jobs.ended(job, states):
                    del running[name]
                    self.done(c, jobs.outcome(job, (states or {}).get(job.job_id)))
            if running:
                time.sleep(poll_s)

    def stage(self, cells: List[Cell]) -> None:
        cells = self.todo(cells)
        if cells:
            (self.run_local if self.study.executor == "local" else self.run_jobs)(cells)


def followup_cells(study: Study, failed: Dict[str, str] | None = None) -> List[Cell]:
    """The cells every task kind adds once the grid has run (``failed``: the cells that did not
    finish, name -> why), e.g. the detection kind's COCO 1x -> 3x."""
    return [c for kind in TASK_KINDS.values() for c in kind.followups(study, failed or {})]


def run_study(path: str | Path, console: bool = True, heartbeat_s: float = 60.0) -> Study:
    """Run (or resume) every cell of the study file ``path``; :class:`StudyError` if any did not
    finish. ``console``: print the study's progress lines (logger ``rdet.study``) on stdout."""
    if console:
        setup_console()
    study = load_study(path)
    run = _Run(study, heartbeat_s)
    if study.executor != "local":
        run.ex = jobs.build_executor(study)
    logger.info(f"{study.path}: {len(study.cells)} cells (+ follow-ups), output in {study.output_dir}, "
                f"executor {study.executor}")
    if study.description:
        logger.info(study.description)
    Path(study.output_dir).mkdir(parents=True, exist_ok=True)
    for stage in STAGES[:-1]:
        run.stage([c for c in run.order if c.stage == stage])
    follow = followup_cells(study, run.failed)
    if follow:
        run.stage(follow)
    if run.failed:
        names = ", ".join(f"{n} ({m})" for n, m in run.failed.items())
        raise StudyError(f"{len(run.failed)} cell(s) did not finish: {names}; each cell's log is its {LOG_NAME}")
    return study


__all__ = ["run_study", "run_cell", "run_cell_job", "execute_cell", "followup_cells", "StudyError", "summary"]
