"""A non-editable install works from any folder: the wheel carries the configs the CLIs default to
and every console script; installed with ``--no-deps`` into a fresh folder, its ``rdet.pretrain``
and ``rdet.classify`` default offline runs succeed from a folder that is not the checkout."""
import concurrent.futures
import configparser
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = {f"rdet-{command}": f"rdet.cli.{module}:main" for command, module in {
    "pretrain": "pretrain", "classify": "classify", "evaluate": "evaluate", "study": "study", "report": "report",
    "convert": "convert", "train-det": "train_det", "select": "select", "backbones": "backbones"}.items()}
TINY = ["SOLVER.EPOCHS", "1", "DATA.MAX_TRAIN", "200", "DATA.MAX_TEST", "100"]


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(wheel, site folder): the wheel built from a copy of the checkout, installed --no-deps."""
    tmp = tmp_path_factory.mktemp("pkg")
    src = tmp / "src"
    shutil.copytree(ROOT, src, symlinks=True, ignore=shutil.ignore_patterns(
        ".git", "output", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache", "datasets"))
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                            "-w", str(tmp / "dist"), str(src)], capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stdout + build.stderr
    (wheel,) = (tmp / "dist").glob("rdet-*.whl")
    site = tmp / "site"
    inst = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site),
                           str(wheel)], capture_output=True, text=True, timeout=600)
    assert inst.returncode == 0, inst.stdout + inst.stderr
    return wheel, site


def _env(site):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(PYTHONPATH=str(site), PYTHONNOUSERSITE="1")
    return env


def test_wheel_declares_every_console_script_and_ships_the_configs(installed):
    wheel, site = installed
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        ep = configparser.ConfigParser()
        ep.read_string(z.read(next(n for n in names if n.endswith(".dist-info/entry_points.txt"))).decode())
        meta = z.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    assert dict(ep["console_scripts"]) == SCRIPTS
    for yaml in (ROOT / "rdet" / "configs").glob("*.yaml"):
        assert f"rdet/configs/{yaml.name}" in names
    assert sum(n.startswith("rdet/paper/") and n.endswith(".csv") for n in names) == 14
    assert "rdet/data/robustbench_imagenet_test_ids.txt" in names  # --subset robustbench's list
    # compatible ranges, so installing into an existing (CUDA) environment keeps its torch
    requires = [ln.split(":", 1)[1].strip() for ln in meta.splitlines() if ln.startswith("Requires-Dist:")]
    torch_reqs = [r for r in requires if re.match(r"torch(vision)?\b", r) and not r.startswith("torch-")]
    assert len(torch_reqs) == 2 and not any("==" in r for r in torch_reqs), torch_reqs
    # every script's target imports from the installed copy
    probe = ("import importlib.metadata as m, rdet; print(rdet.__file__); "
             "[print(e.name, callable(e.load())) for e in m.entry_points(group='console_scripts') "
             "if e.name.startswith('rdet-')]")
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=_env(site),
                          cwd=site.parent)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.split("\n")
    assert lines[0].startswith(str(site))
    assert sorted(lines[1:-1]) == sorted(f"{name} True" for name in SCRIPTS)


def test_every_console_script_and_module_form_errs_in_one_line(installed, tmp_path):
    """A bad flag to each console script, to its ``python -m rdet <command>`` form and to its
    ``python -m rdet.<command>`` form (the card's spelling) is one ``error:`` line and exit 2
    (argparse's usage block would be several lines)."""
    _, site = installed
    forms = [cmd for script in SCRIPTS
             for cmd in ([str(site / "bin" / script)], [sys.executable, "-m", "rdet", script[len("rdet-"):]],
                         [sys.executable, "-m", "rdet." + script[len("rdet-"):].replace("-", "_")])]

    def bad_flag(cmd):
        return subprocess.run([*cmd, "--no-such-flag"], capture_output=True, text=True, env=_env(site), cwd=tmp_path,
                              timeout=120)

    # one per core at a time: each is mostly a fresh interpreter's imports
    with concurrent.futures.ThreadPoolExecutor(max(2, os.cpu_count() or 1)) as pool:
        for cmd, proc in zip(forms, pool.map(bad_flag, forms)):
            err = proc.stderr.strip()
            assert proc.returncode == 2 and err.count("\n") == 0 and err.startswith("error:"), (cmd, proc.stderr)
            # argparse names a missing required argument (evaluate's --weights, convert's input) first
            assert "--no-such-flag" in err or "arguments are required" in err, err
    proc = subprocess.run([sys.executable, "-m", "rdet", "no-such-command"], capture_output=True, text=True,
                          env=_env(site), cwd=tmp_path)
    assert proc.returncode == 2 and proc.stderr.strip().startswith("error: unknown command"), proc.stderr
    proc = subprocess.run([str(site / "bin" / "rdet-report"), str(tmp_path)], capture_output=True, text=True,
                          env=_env(site), cwd=tmp_path)
    assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0 and "error:" in proc.stderr, proc.stderr


@pytest.mark.timeout(600)
def test_default_offline_runs_from_another_folder(installed, tmp_path, fashion_mnist_root):
    """``python -m rdet pretrain`` then ``python -m rdet classify`` with their default (packaged)
    configs, shortened, in a folder that holds no rdet source."""
    _, site = installed
    run = tmp_path / "elsewhere"
    run.mkdir()
    for command in ("pretrain", "classify"):
        proc = subprocess.run([sys.executable, "-m", "rdet", command, *TINY], capture_output=True, text=True, env=_env(site),
                              cwd=run, timeout=500)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert (run / "output" / "pretrain_demo" / "model_final.pth").is_file()
    rec = json.loads((run / "output" / "classify_demo" / "result.json").read_text())
    assert rec["task"] == "classification" and rec["dataset"] == "fashion_mnist" and 0 <= rec["value"] <= 100
    assert rec["backbone"]["source"].endswith("pretrain_demo/model_final.pth")
