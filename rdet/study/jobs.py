"""A study's cells as submitit jobs (``executor: slurm`` or ``submitit_local``), and finding a
cell's job again when the driver is restarted.

Each submitted cell gets ``<cell folder>/job.json`` (job id, executor), written as soon as the job
exists with SIGINT/SIGTERM held back, so an interrupted driver never loses a job it submitted.
A restarted driver re-attaches to a cell's Slurm job while ``squeue`` still shows it pending or
running, instead of submitting the cell again. Slurm states come from ``squeue`` (one call per
poll for all jobs), not ``sacct``: a cluster without an accounting database works too.
The cell's own lock (``runner.cell_lock``) is the last guard: a second job of the same cell waits
for the first, then finds its record and does nothing.
"""
from __future__ import annotations

import json
import logging
import shutil
import signal
import subprocess
from pathlib import Path
from typing import Any, Dict, List, Optional

from rdet.core.atomic import save_json
from rdet.core.errors import ConfigError

logger = logging.getLogger(__name__)

JOB_FILE = "job.json"
# Slurm states of a job that may still run (everything else: it ended)
ACTIVE = {"PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED", "REQUEUED", "REQUEUE_HOLD",
          "REQUEUE_FED", "RESIZING", "SIGNALING", "STAGE_OUT", "STOPPED", "PREEMPTED"}
# The study's ``slurm:`` keys that submitit takes as they are; any other key ``k`` is passed as
# ``slurm_k`` (partition, account, qos, constraint, additional_parameters, ...).
GENERIC = ("timeout_min", "nodes", "tasks_per_node", "gpus_per_node", "cpus_per_task", "mem_gb", "name")


def build_executor(study):
    """The submitit executor of ``study`` (checked here, before any cell runs: a bad ``slurm:``
    key or a machine without Slurm is a one-line :class:`ConfigError`)."""
    import submitit

    folder = Path(study.output_dir) / "submitit"
    params = dict(study.slurm)
    try:
        if study.executor == "submitit_local":
            ex = submitit.LocalExecutor(folder=str(folder))
            ex.update_parameters(timeout_min=int(params.get("timeout_min", 60)))
            return ex
        if not shutil.which("sbatch"):
            raise ConfigError(f"{study.path}: executor slurm, but there is no sbatch on this machine "
                              f"(tools/slurm_local.sh start brings up a one-node cluster)")
        ex = submitit.AutoExecutor(folder=str(folder), cluster="slurm")
        ex.update_parameters(**{k if k in GENERIC else f"slurm_{k}": v for k, v in params.items()})
    except (ValueError, TypeError) as e:
        raise ConfigError(f"{study.path}: bad slurm settings ({str(e).splitlines()[0]})") from None
    return ex


def squeue_states(job_ids: List[str]) -> Optional[Dict[str, str]]:
    """``{job id: Slurm state}`` of the jobs ``squeue`` still knows (ended jobs stay listed for
    MinJobAge, 300 s by default; later they are absent). None when squeue itself fails."""
    if not job_ids:
        return {}
    proc = subprocess.run(["squeue", "-h", "-t", "all", "-o", "%i|%T", "-j", ",".join(job_ids)],
                          capture_output=True, text=True)
    if proc.returncode:
        return {} if "Invalid job id" in proc.stderr else None
    return dict(line.split("|", 1) for line in proc.stdout.split())


def submit(ex, fn, cell_dir: Path, *args):
    """Submit ``fn(*args)`` and record the job in ``cell_dir``; the job of task 0 (the one whose
    result the driver reads)."""
    cell_dir.mkdir(parents=True, exist_ok=True)
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        job = ex.submit(fn, *args)
        save_json({"job_id": job.job_id, "executor": type(job).__name__, "folder": str(job.paths.folder)},
                  cell_dir / JOB_FILE)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)
    return job.task(0) if job.num_tasks > 1 else job


def reattach(cell_dir: Path) -> Optional[Any]:
    """The cell's Slurm job if it is still pending or running, else None (never submitted, ended,
    or a local job, which died with its driver)."""
    try:
        info = json.loads((cell_dir / JOB_FILE).read_text())
    except (OSError, ValueError):
        return None
    if info.get("executor") != "SlurmJob":
        return None
    states = squeue_states([str(info["job_id"])])
    if states is None:
        raise ConfigError(f"cannot ask Slurm about job {info['job_id']} of {cell_dir} (squeue failed); "
                          f"is slurmctld up?")
    if states.get(str(info["job_id"])) not in ACTIVE:
        return None
    import submitit

    return submitit.SlurmJob(folder=info["folder"], job_id=str(info["job_id"]))


def ended(job, states: Optional[Dict[str, str]]) -> bool:
    """Whether ``job`` has ended: its result file exists, or Slurm no longer runs it (``states``
    from :func:`squeue_states`; None: unknown, so not ended)."""
    if job.paths.result_pickle.exists():
        return True
    if type(job).__name__ == "SlurmJob":
        return states is not None and states.get(job.job_id) not in ACTIVE
    return job.done()


def outcome(job, state: Optional[str]) -> Dict[str, Any]:
    """What the job's function returned, or ``{"status": "failed", ...}`` for a job that ended
    without a result (cancelled, timed out, killed) or raised."""
    if not job.paths.result_pickle.exists():
        if type(job).__name__ != "SlurmJob":
            job.done()  # a local job writes its result just before it ends
        if not job.paths.result_pickle.exists():
            return {"status": "failed", "message": f"job {job.job_id} ended ({state or 'state unknown'}) without a "
                                                   f"result; its log: {job.paths.stderr}"}
    try:
        return job.result()
    except Exception as e:  # noqa: BLE001  (the job's own exception, already in its log)
        return {"status": "failed", "message": f"job {job.job_id}: {str(e).strip().splitlines()[-1]}"}
