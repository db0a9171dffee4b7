"""``python rank_driver.py <module> [args]``: an rdet command as its own process runs it (``main()``
with ``sys.argv``, as ``python -m <module>`` does), in a torchrun rank, printing gloo's threads
just before the command destroys its process group and again once ``main`` has returned.
tests/test_engine.py checks that the second list is empty: the rank joined its threads while the
interpreter was alive (left running into the exit, one could abort a finished rank, exit -6)."""
import importlib
import os
import sys

import torch.distributed as dist


def gloo_threads():
    names = (open(f"/proc/self/task/{t}/comm").read().strip() for t in os.listdir("/proc/self/task"))
    return sorted(n for n in names if "gloo" in n)


def subprocess_env():
    """The environment for a script that imports this module (its folder on ``PYTHONPATH``), one
    OpenMP thread per process."""
    path = os.pathsep.join(filter(None, [os.path.dirname(os.path.abspath(__file__)), os.environ.get("PYTHONPATH")]))
    return dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=path)


def _logged_destroy(*args, _destroy=dist.destroy_process_group, **kwargs):
    print("gloo threads before destroy:", gloo_threads(), flush=True)
    _destroy(*args, **kwargs)


if __name__ == "__main__":
    module = sys.argv[1]
    sys.argv = [module, *sys.argv[2:]]
    dist.destroy_process_group = _logged_destroy
    code = importlib.import_module(module).main()
    print("gloo threads at exit:", gloo_threads(), flush=True)
    sys.exit(code)
