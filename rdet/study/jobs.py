"""A study's cells as submitit jobs (``executor: slurm`` or ``submitit_local``), and finding a
cell's job again when the driver is restarted.

Each submitted cell gets ``<cell folder>/job.json`` (job id, executor), written as soon as the job
exists with SIGINT/SIGTERM held back, so an interrupted driver never loses a job it submitted.
A restarted driver re-attaches to a cell's Slurm job while ``squeue`` still shows it pending or
running, instead of submitting the cell again. Slurm states come from ``squeue`` (one call per
poll for all jobs), not ``sacct``: a cluster without an accounting database works too.
The cell's own lock (``runner.cell_lock``) is the last guard: a second job of the same cell waits
for the first, then finds its record and does nothing.

Time limits and preemption: a Slurm cell is a :class:`CellJob` (submitit's ``Checkpointable``).
Slurm warns it ``signal_delay_s`` seconds before its time limit (sbatch ``--signal``), and a
preempting scheduler sends the same signal; submitit then calls :meth:`CellJob.checkpoint`, which
counts the requeue in ``<cell folder>/requeues.json`` and hands back the same call, and requeues
the job (``scontrol requeue``: the job id stays). The requeued job runs the cell again, and the
cell resumes from its own last checkpoint (every task checkpoints at least once an epoch;
``RUNTIME.CHECKPOINT_MINUTES`` for mid-epoch ones), so the work lost is what was done since then.
The driver keeps following the same job id: PENDING after RUNNING, REQUEUED, COMPLETING are all
"still running". After ``max_requeues`` time-limit requeues the cell fails with one line.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import submitit

from rdet.core.atomic import save_json
from rdet.core.errors import ConfigError

logger = logging.getLogger(__name__)

JOB_FILE = "job.json"
REQUEUE_FILE = "requeues.json"
# Slurm states of a job that may still run (everything else: it ended)
ACTIVE = {"PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED", "REQUEUED", "REQUEUE_HOLD",
          "REQUEUE_FED", "RESIZING", "SIGNALING", "STAGE_OUT", "STOPPED", "PREEMPTED"}
# The study's ``slurm:`` keys that submitit takes as they are; any other key ``k`` is passed as
# ``slurm_k`` (partition, account, qos, constraint, additional_parameters, ...).
GENERIC = ("timeout_min", "nodes", "tasks_per_node", "gpus_per_node", "cpus_per_task", "mem_gb", "name")
# rdet's own ``slurm:`` keys: time-limit requeues allowed (submitit's max_num_timeout)
MAX_REQUEUES, DEFAULT_MAX_REQUEUES = "max_requeues", 10


def build_executor(study):
    """The submitit executor of ``study`` (checked here, before any cell runs: a bad ``slurm:``
    key or a machine without Slurm is a one-line :class:`ConfigError`)."""
    folder = Path(study.output_dir) / "submitit"
    params = dict(study.slurm)
    requeues = params.pop(MAX_REQUEUES, DEFAULT_MAX_REQUEUES)
    if not isinstance(requeues, int) or isinstance(requeues, bool) or requeues < 0:
        raise ConfigError(f"{study.path}: slurm {MAX_REQUEUES} must be an integer >= 0, not {requeues!r}")
    try:
        if study.executor == "submitit_local":
            ex = submitit.LocalExecutor(folder=str(folder), max_num_timeout=requeues)
            ex.update_parameters(timeout_min=int(params.get("timeout_min", 60)))
            return ex
        if not shutil.which("sbatch"):
            raise ConfigError(f"{study.path}: executor slurm, but there is no sbatch on this machine "
                              f"(tools/slurm_local.sh start brings up a one-node cluster)")
        ex = submitit.AutoExecutor(folder=str(folder), cluster="slurm", slurm_max_num_timeout=requeues)
        extra = dict(params.pop("additional_parameters", None) or {})
        extra.setdefault("requeue", True)  # a requeued cell must be requeueable whatever the cluster's JobRequeue
        ex.update_parameters(slurm_additional_parameters=extra,
                             **{k if k in GENERIC else f"slurm_{k}": v for k, v in params.items()})
    except (ValueError, TypeError) as e:
        raise ConfigError(f"{study.path}: bad slurm settings ({str(e).splitlines()[0]})") from None
    return ex


def grace_s(study) -> float:
    """How long a signalled cell may take to reach a checkpoint: half the signal's lead time
    (``slurm: signal_delay_s``, submitit's default 90 s)."""
    return 0.5 * float(study.slurm.get("signal_delay_s", 90))


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


def requeue_count(cell_dir: Path) -> int:
    """How often the cell's job was requeued (time limit or preemption) so far."""
    try:
        return int(json.loads((Path(cell_dir) / REQUEUE_FILE).read_text())["requeues"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0


def requeue_then_exit(handler: Callable[[Any, Any], None]) -> Callable[[Any, Any], None]:
    """submitit's requeue handler, for a race it loses: ``scontrol requeue`` makes Slurm end the
    job's processes, and the SIGTERM can reach scontrol itself before it exits. submitit then
    raises ``CalledProcessError``, which it saves as the job's result: the driver would report a
    failed cell while Slurm runs the requeued job. An ``scontrol requeue`` ended by a signal is
    taken as sent, and the process exits as submitit's own requeue path does (no result; had
    the requeue not gone through, the job ends without one and the driver reports that)."""
    def requeue(sig, frame) -> None:
        try:
            handler(sig, frame)
        except subprocess.CalledProcessError as e:
            if e.returncode >= 0 or list(e.cmd[:2]) != ["scontrol", "requeue"]:
                raise
            logger.warning("scontrol requeue ended by signal %d as the job's processes were stopped: exiting",
                           -e.returncode)
            raise SystemExit(-1) from None

    return requeue


class CellJob(submitit.helpers.Checkpointable):
    """What a submitit job runs: ``fn(*args)`` (the runner's job function), requeued with the same
    arguments when Slurm's time-limit or preemption signal arrives. Picklable: ``fn`` is a
    module-level function.

    On the signal the running trainer is asked for a checkpoint at its next boundary
    (``rdet.core.preemption``), after which submitit's own handler runs (:meth:`checkpoint`,
    ``scontrol requeue``, exit). If none comes within ``grace_s`` (half the signal's lead time:
    the cell is starting, evaluating, or not a trainer's), the handler runs then and the cell
    resumes from its previous checkpoint."""

    def __init__(self, fn: Callable[..., Any], cell_dir: Path, grace_s: float = 45.0):
        self.fn, self.cell_dir, self.grace_s = fn, Path(cell_dir), float(grace_s)
        self._pid = None

    def __call__(self, *args: Any) -> Any:
        self._pid = os.getpid()
        self._defer_signal()
        return self.fn(*args)

    def _defer_signal(self) -> None:
        """Wrap submitit's handler of the requeue signal. Only this process acts on it: data-loader
        workers are forked from it and inherit the handler, and Slurm signals every process of
        the job (the workers end with the main process)."""
        import threading

        from rdet.core import preemption

        name = os.environ.get("SUBMITIT_PREEMPT_SIGNAL", "USR2")  # submitit's documented setting
        signum = getattr(signal, f"SIG{name}", None)
        handler, pid = signal.getsignal(signum) if signum else None, self._pid
        if not callable(handler):
            return
        handler = requeue_then_exit(handler)
        state = {"asked": False, "force": False}

        def force() -> None:  # the grace time is over: requeue from the previous checkpoint
            if preemption.pending():
                state["force"] = True
                os.kill(pid, signum)

        def deferred(sig, frame):
            if os.getpid() != pid:
                return
            if state["asked"]:  # srun forwards Slurm's signal: a second copy comes at once; only the timer's counts
                if state["force"] and preemption.cancel() is not None:
                    handler(sig, frame)
                return
            state["asked"] = True
            logger.warning("%s: time limit or preemption signal: checkpointing at the next boundary, then requeueing",
                           self.cell_dir)
            preemption.request(lambda: handler(sig, None))
            timer = threading.Timer(self.grace_s, force)
            timer.daemon = True
            timer.start()

        signal.signal(signum, deferred)

    def checkpoint(self, *args: Any) -> "submitit.helpers.DelayedSubmission":
        """Called by submitit's handler once the cell's checkpoint is on disk (or the grace time
        is over): count the requeue and run the same call again."""
        n = requeue_count(self.cell_dir) + 1
        save_json({"requeues": n, "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
                   "slurm_restart_count": int(os.environ.get("SLURM_RESTART_COUNT", 0) or 0)},
                  self.cell_dir / REQUEUE_FILE)
        logger.warning("%s: requeue %d (the cell resumes from its checkpoint)", self.cell_dir, n)
        return submitit.helpers.DelayedSubmission(CellJob(self.fn, self.cell_dir, self.grace_s), *args)
