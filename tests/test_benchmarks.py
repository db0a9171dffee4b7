"""Every script in benchmarks/ still imports what it uses from rdet and parses its options
(``--help``), and every flag its docstring's usage lines show is one it has: the benchmarks are
not run by the tests (they time things), so a library change that drops a name they import, or
a usage line that names a flag that is gone, would otherwise go unnoticed until someone measures."""
import re
import runpy
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = sorted((ROOT / "benchmarks").glob("*.py"))


def _run_script(script, args, capsys, monkeypatch):
    """``python script *args`` in this process (as ``__main__``, from an empty folder): its exit
    code, stdout and stderr. In-process because the script's imports are what is checked, and
    torch is already loaded here (a fresh interpreter per script costs seconds each)."""
    monkeypatch.setattr(sys, "argv", [str(script), *args])
    monkeypatch.setattr(sys, "path", [str(Path(script).parent), *sys.path])  # as python puts the script's folder
    with pytest.raises(SystemExit) as stop:
        runpy.run_path(str(script), run_name="__main__")
    out = capsys.readouterr()
    return stop.value.code or 0, out.out, out.err


def test_every_benchmark_script_imports_and_parses_its_options(tmp_path, capsys, monkeypatch):
    assert len(SCRIPTS) >= 8, SCRIPTS
    monkeypatch.chdir(tmp_path)
    for script in SCRIPTS:
        code, out, err = _run_script(script, ["--help"], capsys, monkeypatch)
        assert code == 0 and out.startswith("usage:"), (script.name, err[-2000:])
        usage = [ln for ln in script.read_text().split('"""')[1].splitlines()
                 if ln.strip().startswith(f"python benchmarks/{script.name}")]
        shown = {f for ln in usage for f in re.findall(r"(--[a-z][a-z0-9-]*)", ln)}
        helped = set(re.findall(r"(--[a-z][a-z0-9-]*)", out.split("\n\n")[0]))  # argparse's usage
        assert shown <= helped, (script.name, shown - helped)
    assert not any(tmp_path.iterdir())


def test_a_bad_count_is_refused_before_any_work(tmp_path, capsys, monkeypatch):
    """``--reps 0`` (no timed run to take the best of) is argparse's error, exit 2, before anything is built."""
    monkeypatch.chdir(tmp_path)
    for name in ["bench_adv_train.py", "bench_convert.py", "bench_full_network.py"]:
        code, _, err = _run_script(ROOT / "benchmarks" / name, ["--reps", "0"], capsys, monkeypatch)
        last = err.strip().splitlines()[-1]
        assert code == 2 and last.endswith("--reps: 0: must be at least 1"), (name, err)
    assert not any(tmp_path.iterdir())


def test_transferability_benchmark_refuses_a_bad_count_before_any_work(tmp_path, capsys, monkeypatch):
    """``--seeds 0`` (no ground-truth run to average) or ``--models 0`` is argparse's error, exit 2,
    before the zoo is trained or anything is written."""
    monkeypatch.chdir(tmp_path)
    for flag in ("--seeds", "--models", "--epochs"):
        code, _, err = _run_script(ROOT / "benchmarks" / "bench_transferability.py", [flag, "0"], capsys, monkeypatch)
        assert code == 2 and err.strip().splitlines()[-1].endswith(f"{flag}: 0: must be at least 1"), err
    assert not any(tmp_path.iterdir())
