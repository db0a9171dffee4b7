"""torchrun ``--max-restarts``: one of two gloo processes dies in the middle of an epoch (once:
a marker file), torchrun restarts the group, the restarted group resumes from the last checkpoint
by itself (no ``--resume`` on the command line) and ends with the same weights as an
uninterrupted two-process run."""
import os
import subprocess
import sys

import pytest
import torch

from rdet.engine import FINAL

# rdet keeps each torchrun attempt's process-group keys apart in the agent's store
# (rdet.engine.runtime.init_process_group): without that the restarted group read the dead
# attempt's gloo addresses and failed about half the time on a loaded machine.
pytestmark = pytest.mark.slow

ARGS = ["--dataset", "digits", "--eps", "0", "DATA.TRAIN_SIZE", "16", "DATA.TEST_RESIZE", "16", "DATA.MAX_TRAIN",
        "256", "DATA.MAX_TEST", "64", "DATA.NUM_WORKERS", "0", "SOLVER.BATCH_SIZE", "64", "SOLVER.EPOCHS", "3",
        "SOLVER.LR_STEP_EPOCHS", "2", "MODEL.ARCH", "resnet18", "RUNTIME.LOG_EVERY", "1"]

# rank 1 leaves (os._exit, as a killed process: no clean-up) after the third step of the second
# epoch, on the group's first run only
DYING = """
import os, sys
from pathlib import Path
from rdet.engine.trainer import EpochTrainer
marker, real = Path(sys.argv.pop(1)), EpochTrainer.optimize

def optimize(self, loss):
    real(self, loss)
    if self.rt.rank == 1 and self.epoch == 1 and self.batch_in_epoch == 2 and not marker.exists():
        marker.write_text(os.environ["TORCHELASTIC_RESTART_COUNT"])
        os._exit(9)

EpochTrainer.optimize = optimize
from rdet.cli.pretrain import main
sys.exit(main(sys.argv[1:]))
"""


def _torchrun(args, timeout=500):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "--max-restarts=1",
           *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)


@pytest.mark.timeout(900)
def test_a_dead_rank_is_restarted_and_the_group_resumes(tmp_path):
    script, marker = tmp_path / "dying.py", tmp_path / "killed_once"
    script.write_text(DYING)
    killed = _torchrun([str(script), str(marker), *ARGS, "--output-dir", str(tmp_path / "killed")])
    assert killed.returncode == 0, killed.stderr[-3000:]
    assert marker.read_text() == "0"  # it died in the first run of the group
    log = killed.stdout + killed.stderr
    assert "resuming" in log and "from epoch 2" in log, log[-3000:]  # the restart continued, not started afresh
    plain = _torchrun(["-m", "rdet.cli.pretrain", *ARGS, "--output-dir", str(tmp_path / "plain")])
    assert plain.returncode == 0, plain.stderr[-3000:]
    a = torch.load(tmp_path / "killed" / FINAL, weights_only=True)["model"]
    b = torch.load(tmp_path / "plain" / FINAL, weights_only=True)["model"]
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
