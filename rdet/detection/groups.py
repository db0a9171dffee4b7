"""detectron2's process groups, freed when a launched worker's work is done.

detectron2's ``launch`` creates the groups in each worker (the world group, a local group per
machine, and on GPUs a gloo group for gathering Python objects) and never destroys them; the
worker process then exits with their threads running, and a gloo thread still at work while the
interpreter exits can abort the worker after a successful run ("terminate called without an
active exception", exit -6, as seen in rdet's two-process torchrun runs).
:func:`release_process_groups` drops every reference that keeps a group alive and destroys
them, which joins their threads while the interpreter is alive.

Beyond ``destroy_process_group``, detectron2's ``utils.comm`` holds the local group in a module
global and the gathering group in an ``lru_cache`` (this module is the one place that touches
them), and the trainer holds its DDP model, and so the world group, in reference cycles."""
import torch.distributed as dist

from rdet.core.collector import collect_all


def release_process_groups() -> None:
    """Destroy this worker's process groups and join their threads. Call it once the work is
    done and its objects are dropped (a group held by a live DDP model is not freed); never on
    a failure path, where joining could wait for a collective in flight until gloo's timeout."""
    if not dist.is_initialized():
        return
    from detectron2.utils import comm

    comm._LOCAL_PROCESS_GROUP = None
    comm.create_local_process_group.cache_clear()  # a later launch in this process makes its own again
    comm._get_global_gloo_group.cache_clear()
    collect_all()  # what still holds a group in reference cycles (the trainer and its DDP model)
    dist.destroy_process_group()
