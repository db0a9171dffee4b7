"""Output-folder lock: a second process is refused naming the holder's pid; a killed holder's lock
is gone; a clean exit leaves nothing behind."""
import os
import signal
import subprocess
import sys

import pytest

from rdet.core.errors import RdetError
from rdet.core.runlock import LOCK_NAME, OutputLockedError, output_lock

_HOLD = ("import sys; from rdet.core.runlock import output_lock\n"
         "with output_lock(sys.argv[1]):\n"
         "    print('locked', flush=True); sys.stdin.readline()\n")


def _holder(folder):
    proc = subprocess.Popen([sys.executable, "-c", _HOLD, str(folder)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_second_process_refused_with_pid(tmp_path):
    proc = _holder(tmp_path)
    try:
        assert (tmp_path / LOCK_NAME).read_text().strip() == str(proc.pid)
        with pytest.raises(OutputLockedError, match=rf"in use by another rdet run \(pid {proc.pid}\)") as e:
            with output_lock(tmp_path):
                pass
        assert isinstance(e.value, RdetError) and "\n" not in str(e.value)
        # another process (not this one) is refused too, through the same error
        other = subprocess.run([sys.executable, "-c", _HOLD, str(tmp_path)], capture_output=True, text=True,
                               input="\n")
        assert other.returncode != 0 and f"pid {proc.pid}" in other.stderr
    finally:
        proc.communicate("\n")
    assert proc.returncode == 0
    assert not (tmp_path / LOCK_NAME).exists()  # released and removed on a clean exit
    with output_lock(tmp_path) as path:
        assert path.read_text().strip() == str(os.getpid())


def test_killed_holder_releases(tmp_path):
    proc = _holder(tmp_path)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert (tmp_path / LOCK_NAME).read_text().strip() == str(proc.pid)  # stale file, no lock
    with output_lock(tmp_path):
        assert (tmp_path / LOCK_NAME).read_text().strip() == str(os.getpid())
    assert os.listdir(tmp_path) == []


def test_same_process_twice_is_refused(tmp_path):
    """flock belongs to an open file: a second open in one process conflicts as well."""
    with output_lock(tmp_path):
        with pytest.raises(OutputLockedError, match=f"pid {os.getpid()}"):
            with output_lock(tmp_path):
                pass
        assert (tmp_path / LOCK_NAME).exists()
