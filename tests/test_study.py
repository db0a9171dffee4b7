"""Study runner: a killed and restarted study runs every cell exactly once; submitit's local
executor runs cells; malformed study files fail with one line."""
import os
import signal
import subprocess
import sys
import time

import pytest

from rdet.errors import ConfigError
from rdet.study import load_study, run_study

GRID = """
output_dir: {out}
executor: {executor}
commands:
  - name: "cell_{{a}}_{{b}}"
    run: "sleep 0.6 && echo cell_{{a}}_{{b}} >> {log}"
    grid: {{a: [1, 2], b: [1, 2]}}
"""


def _study(tmp_path, executor="local"):
    path = tmp_path / "study.yaml"
    path.write_text(GRID.format(out=tmp_path / "out", log=tmp_path / "log.txt", executor=executor))
    return path


def _lines(tmp_path):
    log = tmp_path / "log.txt"
    return log.read_text().split() if log.exists() else []


@pytest.mark.timeout(120)
def test_killed_study_restarts_and_runs_each_cell_once(tmp_path):
    path = _study(tmp_path)
    proc = subprocess.Popen([sys.executable, "-m", "rdet.study", str(path), "--no-report"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 60
    while len(_lines(tmp_path)) < 2 and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.2)  # cell 2's record is written; cell 3 is sleeping
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert 2 <= len(_lines(tmp_path)) < 4  # killed mid-way
    run_study(path)
    lines = _lines(tmp_path)
    assert sorted(lines) == sorted(f"cell_{a}_{b}" for a in (1, 2) for b in (1, 2)), lines
    run_study(path)  # everything finished: nothing runs again
    assert len(_lines(tmp_path)) == 4


@pytest.mark.timeout(180)
def test_submitit_local_executor_runs_cells(tmp_path):
    run_study(_study(tmp_path, executor="submitit_local"))
    assert sorted(_lines(tmp_path)) == sorted(f"cell_{a}_{b}" for a in (1, 2) for b in (1, 2))
    assert (tmp_path / "out" / "submitit").is_dir()


def test_grid_expansion_and_dependencies(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("""
pretrain: {config: c.yaml, runs: [{name: e0, eps: 0}, {name: e1, eps: 1}]}
backbones: [{name: rel, weights: resnet50_l2_eps3}]
classification: {datasets: [digits, {name: f, dataset: fashion_mnist}], modes: [fixed, full], lrs: [0.01, 0.001],
                 seeds: [0, 1, 2]}
detection: [{name: coco, config: configs/coco_r50_fpn_1x.yaml, then_3x: configs/coco_r50_fpn_3x.yaml}]
""")
    study = load_study(path)
    kinds = [c.kind for c in study.cells]
    assert kinds.count("pretrain") == 2 and kinds.count("classify") == 3 * 2 * 2 * 2 * 3
    assert kinds.count("convert") == 3 and kinds.count("detect") == 3
    cell = next(c for c in study.cells if c.name == "classify/digits/e1/full/lr0.001_seed2")
    assert cell.deps == ("pretrain/e1",)


@pytest.mark.parametrize("text,match", [
    ("bogus: 1\ncommands: []", "unknown study section"),
    ("commands: [{run: echo}]", "needs a 'name'"),
    ("classification: {datasets: [digits]}", "needs backbones"),
    ("executor: magic\ncommands: [{name: a, run: echo}]", "executor must be"),
    ("[1, 2", "not valid YAML"),
])
def test_bad_study_files(tmp_path, text, match):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=match):
        load_study(path)
    proc = subprocess.run([sys.executable, "-m", "rdet.study", str(path)], capture_output=True, text=True)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
