"""Every script in benchmarks/ still imports what it uses from rdet and parses its options
(``--help``), and every flag its docstring's usage lines show is one it has: the benchmarks are
not run by the tests (they time things), so a library change that drops a name they import, or
a usage line that names a flag that is gone, would otherwise go unnoticed until someone measures."""
import concurrent.futures
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = sorted((ROOT / "benchmarks").glob("*.py"))


def test_every_benchmark_script_imports_and_parses_its_options(tmp_path):
    assert len(SCRIPTS) >= 8, SCRIPTS

    def help_of(script):
        return subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True, cwd=tmp_path,
                              timeout=120)

    with concurrent.futures.ThreadPoolExecutor(max(2, os.cpu_count() or 1)) as pool:
        for script, proc in zip(SCRIPTS, pool.map(help_of, SCRIPTS)):
            assert proc.returncode == 0 and proc.stdout.startswith("usage:"), (script.name, proc.stderr[-2000:])
            usage = [ln for ln in script.read_text().split('"""')[1].splitlines()
                     if ln.strip().startswith(f"python benchmarks/{script.name}")]
            shown = {f for ln in usage for f in re.findall(r"(--[a-z][a-z0-9-]*)", ln)}
            helped = set(re.findall(r"(--[a-z][a-z0-9-]*)", proc.stdout.split("\n\n")[0]))  # argparse's usage
            assert shown <= helped, (script.name, shown - helped)


def test_a_bad_count_is_refused_before_any_work(tmp_path):
    """``--reps 0`` (no timed run to take the best of) is argparse's error, exit 2, before anything is built."""
    names = ["bench_adv_train.py", "bench_convert.py", "bench_full_network.py"]

    def zero_reps(name):
        return subprocess.run([sys.executable, str(ROOT / "benchmarks" / name), "--reps", "0"], capture_output=True,
                              text=True, cwd=tmp_path, timeout=120)

    with concurrent.futures.ThreadPoolExecutor(max(2, os.cpu_count() or 1)) as pool:
        for name, proc in zip(names, pool.map(zero_reps, names)):
            last = proc.stderr.strip().splitlines()[-1]
            assert proc.returncode == 2 and last.endswith("--reps: 0: must be at least 1"), (name, proc.stderr)
    assert not any(tmp_path.iterdir())
