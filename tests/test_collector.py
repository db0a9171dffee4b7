"""rdet.core.collector: a command's own process collects rarely while it imports, freezes the
imports when its work starts and collects once at exit; a ``main(argv)`` called from other code
(this test process) leaves the collector as it was."""
import gc
import json
import subprocess
import sys

from rdet.cli import entry_point
from rdet.config import get_pretrain_cfg


def _work(argv):
    from rdet.engine.runtime import setup_runtime

    setup_runtime(get_pretrain_cfg())


def test_a_command_process_defers_collection_then_freezes_its_imports_when_the_work_starts():
    script = """
import gc, json, sys
from rdet.cli import entry_point
from rdet.config import get_pretrain_cfg
seen = {"before": gc.get_threshold()[0]}
def fn(argv):
    seen["while_importing"] = gc.get_threshold()[0]
    import torchvision  # what a task imports
    from rdet.engine.runtime import setup_runtime
    setup_runtime(get_pretrain_cfg())
    seen["frozen"], seen["after"] = gc.get_freeze_count(), gc.get_threshold()[0]
sys.argv = ["cmd"]
assert entry_point(fn)() == 0
print(json.dumps(seen))
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    seen = json.loads(proc.stdout)
    assert seen["while_importing"] >= 50_000 > seen["before"] == seen["after"]
    assert seen["frozen"] > 100_000  # torch's and torchvision's objects, out of the collector's walks


def test_main_called_with_arguments_changes_nothing_in_the_calling_process():
    threshold, frozen = gc.get_threshold(), gc.get_freeze_count()
    assert entry_point(_work)([]) == 0
    assert gc.get_threshold() == threshold and gc.get_freeze_count() == frozen


def test_cyclic_garbage_is_still_finalised(tmp_path):
    """What is frozen is never collected, so the collector runs once before each freeze: an
    object in a reference cycle, garbage when the command ends, still has its finaliser run."""
    out = tmp_path / "finalised.txt"
    script = f"""
import sys
from rdet.cli import entry_point
class Holder:
    def __del__(self):
        with open({str(out)!r}, "w") as f:
            f.write("finalised")
def fn(argv):
    import gc
    gc.disable()  # no collection while the command runs
    h = Holder(); h.me = h
sys.argv = ["cmd"]
sys.exit(entry_point(fn)())
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert out.read_text() == "finalised"
