"""Study runner: a killed and restarted study runs every cell exactly once; two drivers on one study
never run a cell twice; submitit's local executor runs cells; the console shows a few lines per
cell and each cell's log holds its own output once; an unreadable record is named and its cell
runs again, with the cell counter right across skips; a failed cell stops only the cells that
need it; the COCO 1x -> 3x follow-ups and the C4 rule; malformed study files fail with one line."""
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from rdet.core.errors import ConfigError
from rdet.core.records import read_record, write_record
from rdet.study import Cell, StudyError, TaskKind, followup_cells, get_kind, load_study, register_kind, run_study
from rdet.study.base import unregister_kind
from test_validate import _UnreadableAt3

ROOT = Path(__file__).resolve().parents[1]

# Cell 2_1 blocks (after writing a marker) until the gate file exists; every cell appends its
# name to the counter when it completes.
GRID = """
output_dir: {out}
executor: {executor}
commands:
  - name: "cell_{{a}}_{{b}}"
    run: "(test {{a}}{{b}} != 21 || (touch {marker}; while [ ! -e {gate} ]; do sleep 0.05; done))
          && echo cell_{{a}}_{{b}} >> {log}"
    grid: {{a: [1, 2], b: [1, 2]}}
"""
NAMES = [f"cell_{a}_{b}" for a in (1, 2) for b in (1, 2)]


def _study(tmp_path, executor="local"):
    path = tmp_path / "study.yaml"
    path.write_text(GRID.format(out=tmp_path / "out", log=tmp_path / "count.txt", executor=executor,
                                gate=tmp_path / "gate", marker=tmp_path / "marker"))
    return path


def _lines(tmp_path):
    log = tmp_path / "count.txt"
    return log.read_text().split() if log.exists() else []


def _wait_for(path, proc, seconds=60):
    deadline = time.time() + seconds
    while not path.exists():
        assert proc.poll() is None, f"driver exited early ({proc.returncode})"
        assert time.time() < deadline, f"no {path} after {seconds} s"
        time.sleep(0.05)


def _driver(path, log):
    return subprocess.Popen([sys.executable, "-m", "rdet", "study", str(path), "--no-report"],
                            stdout=open(log, "w"), stderr=subprocess.STDOUT, start_new_session=True)


@pytest.mark.timeout(120)
def test_killed_study_restarts_and_runs_each_cell_once(tmp_path):
    path = _study(tmp_path)
    proc = _driver(path, tmp_path / "driver.txt")
    _wait_for(tmp_path / "marker", proc)  # cells 1 and 2 are finished, cell 3 is running
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert _lines(tmp_path) == NAMES[:2]
    (tmp_path / "gate").touch()
    run_study(path, console=False)
    assert sorted(_lines(tmp_path)) == sorted(NAMES)
    run_study(path, console=False)  # everything finished: nothing runs again
    assert len(_lines(tmp_path)) == 4


@pytest.mark.timeout(120)
def test_two_drivers_never_run_a_cell_twice(tmp_path):
    path = _study(tmp_path)
    first = _driver(path, tmp_path / "first.txt")
    _wait_for(tmp_path / "marker", first)  # the first driver holds cell 3's lock
    second = _driver(path, tmp_path / "second.txt")
    deadline = time.time() + 60
    while "another process runs this cell" not in (tmp_path / "second.txt").read_text():
        assert time.time() < deadline and second.poll() is None
        time.sleep(0.05)
    (tmp_path / "gate").touch()  # both drivers go on to cell 4: one runs it, the other waits, then skips it
    assert first.wait(timeout=60) == 0 and second.wait(timeout=60) == 0
    assert sorted(_lines(tmp_path)) == sorted(NAMES)


@pytest.mark.timeout(180)
def test_submitit_local_executor_runs_cells(tmp_path):
    (tmp_path / "gate").touch()
    run_study(_study(tmp_path, executor="submitit_local"), console=False)
    assert sorted(_lines(tmp_path)) == sorted(NAMES)
    assert (tmp_path / "out" / "submitit").is_dir()
    assert json.loads((tmp_path / "out" / "cell_1_1" / "job.json").read_text())["executor"] == "LocalJob"


def test_unreadable_record_reruns_its_cell_and_the_counter_counts_skips(tmp_path, capsys):
    path = _study(tmp_path)
    (tmp_path / "gate").touch()
    run_study(path, console=False)
    bad = tmp_path / "out" / "cell_1_2" / "result.json"
    bad.write_text('{"task": "command", truncated')
    (tmp_path / "out" / "cell_2_2" / "result.json").unlink()
    capsys.readouterr()
    run_study(path)
    console = capsys.readouterr().out
    assert sorted(_lines(tmp_path)) == sorted(NAMES + ["cell_1_2", "cell_2_2"])  # exactly those two again
    assert re.search(rf"cell 2/4 command cell_1_2: {re.escape(str(bad))}: unreadable result record", console)
    for n, name in enumerate(NAMES, 1):
        verb = "finished before, skipped" if name in ("cell_1_1", "cell_2_1") else "done in"
        assert re.search(rf"cell {n}/4 command {name}: {verb}", console), console


def test_failed_cell_blocks_only_its_dependents(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(f"""
output_dir: {tmp_path / 'out'}
pretrain: {{config: configs/pretrain_demo.yaml, runs: [{{name: broken, eps: 0}}],
           opts: [DATA.DATASET, no_such_dataset]}}
commands: [{{name: fine, run: "echo ok > {tmp_path / 'fine.txt'}"}}]
classification: {{datasets: [digits]}}
""")
    with pytest.raises(StudyError, match=r"2 cell\(s\) did not finish: pretrain/broken \(.*no_such_dataset.*\), "
                       r"classify/digits/broken/fixed/lr0.01_seed0 \(not run: needs pretrain/broken\)"):
        run_study(path, console=False)
    assert (tmp_path / "fine.txt").read_text() == "ok\n"
    assert "no_such_dataset" in (tmp_path / "out" / "pretrain" / "broken" / "log.txt").read_text()
    assert not (tmp_path / "out" / "classify").exists()


@pytest.mark.timeout(300)
def test_console_is_short_and_each_cell_logs_once(tmp_path, capfd, fashion_mnist_root):
    """A command, a classification and a Detectron2 cell: a few console lines each, no detectron2
    line on the console, and each cell's log.txt holds its own output exactly once."""
    from rdet.backbones import get_spec

    torch.manual_seed(0)
    torch.save({"model": get_spec("resnet18").builder(10).state_dict(),
                "rdet": {"arch": "resnet18", "norm": "l2", "eps": 0.5}}, tmp_path / "r18.pth")
    small = ('[DATA.TRAIN_SIZE, 16, DATA.TEST_RESIZE, 16, DATA.CLASSES, "[]", SOLVER.EPOCHS, 1, DATA.MAX_TRAIN, 300, '
             'DATA.MAX_TEST, 100]')
    det = ("[SOLVER.MAX_ITER, 2, SOLVER.IMS_PER_BATCH, 1, SOLVER.WARMUP_ITERS, 1, SOLVER.STEPS, '()', "
           "INPUT.MIN_SIZE_TRAIN, '(64,)', INPUT.MAX_SIZE_TRAIN, 64, INPUT.MIN_SIZE_TEST, 64, INPUT.MAX_SIZE_TEST, 64, "
           "DATASETS.TEST, '()', SEED, 0, SOLVER.CHECKPOINT_PERIOD, 100]")  # training logs only: no evaluation
    path = tmp_path / "s.yaml"
    path.write_text(f"""
description: a tiny console study
output_dir: {tmp_path / 'out'}
backbones: [{{name: r18, weights: {tmp_path / 'r18.pth'}}}]
commands: [{{name: hello, run: "echo hello-from-the-command"}}]
classification: {{config: configs/classify_demo.yaml, datasets: [{{name: digits, opts: {small}}}]}}
detection: [{{name: det, config: configs/demo_mask_r18_fpn.yaml, opts: {det}}}]
""")
    run_study(path, heartbeat_s=0)
    console = capfd.readouterr()
    lines = (console.out + console.err).strip().splitlines()
    assert len(lines) <= 2 + 2 * 4, lines  # header, description, running + done for each of 4 cells
    assert not any(re.search(r"d2\.|detectron2|Starting training|hello-from|transfer resnet18", ln) for ln in lines)
    assert re.search(r"cell 4/4 detect detect/det/r18: done in \d+ s: no AP \(no test set\)", lines[-1]), lines
    out = tmp_path / "out"
    logs = {name: (out / name / "log.txt").read_text()
            for name in ("hello", "classify/digits/r18/fixed/lr0.01_seed0", "convert/r18", "detect/det/r18")}
    assert logs["hello"].count("hello-from-the-command") == 1
    assert logs["classify/digits/r18/fixed/lr0.01_seed0"].count("transfer resnet18") == 1
    det_log = logs["detect/det/r18"]
    assert det_log.count("Starting training from iteration 0") == 1 and det_log.count("Environment info") == 1
    for name, text in logs.items():
        assert text.count("=====") == 1, name  # one run of the cell
        if name != "detect/det/r18":
            assert "Starting training" not in text and "d2." not in text, name


def _hand_made_detection(tmp_path, aps, eps):
    """A study with one COCO task (then_3x) over len(aps) backbones, their convert and 1x detection
    records written by hand."""
    path = tmp_path / "s.yaml"
    names = [f"b{i}" for i in range(len(aps))]
    path.write_text(f"""
output_dir: {tmp_path / 'out'}
backbones: [{', '.join(f'{{name: {n}, weights: w{n}.pth}}' for n in names)}]
detection: [{{name: coco, config: configs/coco_r50_fpn_1x.yaml, then_3x: configs/coco_r50_fpn_3x.yaml}}]
""")
    for n, ap, e in zip(names, aps, eps):
        bb = {"arch": "resnet50", "norm": "l2", "eps": e, "source": f"w{n}.pth"}
        write_record((tmp_path / "out" / "convert" / n).mkdir(parents=True) or tmp_path / "out" / "convert" / n,
                     {"task": "convert", "backbone": bb})
        d = tmp_path / "out" / "detect" / "coco" / n
        d.mkdir(parents=True)
        write_record(d, {"task": "detection", "box_AP": ap, "backbone": bb, "schedule": "1x"})
    return load_study(path)


def test_followup_cells_take_the_top3_robust_and_the_standard_backbone_to_3x(tmp_path):
    study = _hand_made_detection(tmp_path, aps=[30.0, 35.0, 38.0, 33.0, 36.0], eps=[0.0, 0.1, 1.0, 3.0, 5.0])
    follow = followup_cells(study)
    assert sorted(c.name for c in follow) == ["detect/coco_3x/b0", "detect/coco_3x/b1", "detect/coco_3x/b2",
                                              "detect/coco_3x/b4"]  # b3 (33.0) is the 4th robust one
    for c in follow:
        assert c.params["config"] == "configs/coco_r50_fpn_3x.yaml" and c.stage == "followup"
        assert c.deps == (f"convert/{c.name.rsplit('/', 1)[1]}",)
    from rdet.study.kinds.detection import three_x_cells

    assert three_x_cells(study, exclude=["coco"]) == []
    # a failed 1x cell of the task: no follow-ups chosen from an incomplete set
    assert followup_cells(study, {"detect/coco/b3": "failed"}) == []


def test_c4_rule_follows_the_registry_geometry_and_the_roi_heads():
    from rdet.detection.train import build_cfg, check_c4

    voc_c4, voc_fpn = str(ROOT / "configs" / "voc_r50_c4.yaml"), str(ROOT / "configs" / "voc_r50_fpn.yaml")
    for arch in ("resnet50", "wide_resnet50_2", "resnext50_32x4d"):
        check_c4(build_cfg(voc_c4), arch)  # Bottleneck nets
    with pytest.raises(ConfigError, match="C4 detector, which needs a Bottleneck ResNet .* not resnet18"):
        check_c4(build_cfg(voc_c4), "resnet18")
    check_c4(build_cfg(voc_fpn), "resnet18")  # FPN takes any ResNet
    # what counts is the config's structure, not its file name
    with pytest.raises(ConfigError, match="not resnet34"):
        check_c4(build_cfg(voc_fpn, ["MODEL.ROI_HEADS.NAME", "Res5ROIHeads"]), "resnet34")


def test_a_converters_config_is_merged_over_the_task_config_and_its_overrides(tmp_path):
    """A detection cell runs an R50 task config with the backbone it is given: the converter's
    MODEL keys win over the task's file and KEY VALUE overrides; its MODEL.WEIGHTS does not
    replace the run's."""
    import yaml

    from rdet.detection.train import build_cfg

    conv = tmp_path / "r18_d2.yaml"
    conv.write_text(yaml.safe_dump({"MODEL": {"WEIGHTS": "elsewhere.pkl", "PIXEL_MEAN": [1.0, 2.0, 3.0],
                                              "RESNETS": {"DEPTH": 18, "RES2_OUT_CHANNELS": 64}}}))
    cfg = build_cfg(str(ROOT / "configs" / "voc_r50_fpn.yaml"),
                    ["MODEL.RESNETS.DEPTH", "101", "MODEL.WEIGHTS", "run.pkl", "SOLVER.MAX_ITER", "7"], str(conv))
    assert cfg.MODEL.RESNETS.DEPTH == 18 and cfg.MODEL.RESNETS.RES2_OUT_CHANNELS == 64
    assert list(cfg.MODEL.PIXEL_MEAN) == [1.0, 2.0, 3.0]
    assert cfg.MODEL.WEIGHTS == "run.pkl" and cfg.SOLVER.MAX_ITER == 7
    conv.write_text(yaml.safe_dump({"MODEL": {"RESNETS": {"NO_SUCH_KEY": 1}}}))
    with pytest.raises(ConfigError, match="NO_SUCH_KEY"):
        build_cfg(str(ROOT / "configs" / "voc_r50_fpn.yaml"), [], str(conv))


def test_grid_expansion_and_dependencies(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("""
pretrain: {config: configs/pretrain_demo.yaml, runs: [{name: e0, eps: 0}, {name: e1, eps: 1}]}
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
    assert next(c for c in study.cells if c.name == "detect/coco/e0").deps == ("convert/e0",)
    # a detection or segmentation task may choose backbones; the conversions follow the choice
    path.write_text(path.read_text().replace("then_3x: configs/coco_r50_fpn_3x.yaml}", "backbones: [e1, rel]}")
                    + "segmentation: [{name: ade, config: configs/ade20k_sem_r50_fpn_80k.yaml, backbones: [e1]}]\n")
    names = {c.name for c in load_study(path).cells if c.kind in ("convert", "detect", "segment")}
    assert names == {"convert/e1", "convert/rel", "detect/coco/e1", "detect/coco/rel", "segment/ade/e1/s0"}


@pytest.mark.parametrize("text,match", [
    ("bogus: 1\ncommands: []", "unknown study section"),
    ("commands: [{run: echo}]", "needs a 'name'"),
    ("classification: {datasets: [digits]}", "needs backbones"),
    ("executor: magic\ncommands: [{name: a, run: echo}]", "executor must be"),
    ("[1, 2", "not valid YAML"),
    ("backbones: [{name: a, weights: a.pth}]\ndetection: [{name: t, config: configs/voc_r50_fpn.yaml, backbones: [b]}]",
     r"detection task t: backbones must be a list of the study's backbones \(a\); got \['b'\]"),
])
def test_bad_study_files(tmp_path, text, match):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=match):
        load_study(path)
    proc = subprocess.run([sys.executable, "-m", "rdet", "study", str(path)], capture_output=True, text=True)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1


class _Squares(TaskKind):
    """A task kind defined here, outside rdet: section ``squares: {ns: [...]}`` -> one cell per n
    (its record: n squared), then one follow-up cell summing the squares once they all finished."""
    name, section, order = "square", "squares", 60

    def expand(self, section, ex):
        return [Cell(self.name, f"square/{n}", "transfer", {"n": int(n)}) for n in section["ns"]]

    def run(self, cell, study):
        out = cell.output_dir(study.output_dir)
        out.mkdir(parents=True, exist_ok=True)
        if cell.stage == "followup":
            value = sum(read_record(Path(study.output_dir) / d / "result.json")["value"] for d in cell.deps)
        else:
            value = cell.params["n"] ** 2
        write_record(out, {"task": "square", "metric": "n^2", "value": value})

    def summary(self, rec):
        return f"squared: {rec['value']}"

    def followups(self, study, failed):
        mine = [c.name for c in study.cells if c.kind == self.name]
        if any(n in failed for n in mine):
            return []
        return [Cell(self.name, "square/sum", "followup", {}, tuple(mine))]


class _Loaders(TaskKind):
    """Cell ``loaders/bad`` fails in its DataLoader's worker; ``loaders/next``, run after it in the
    same process, records how many child processes are alive then."""
    name, section, order = "loaders", "loaders", 61

    def expand(self, section, ex):
        return [Cell(self.name, f"loaders/{n}", "transfer", {}) for n in ("bad", "next")]

    def run(self, cell, study):
        import multiprocessing

        if cell.name == "loaders/bad":
            for _ in torch.utils.data.DataLoader(_UnreadableAt3(), batch_size=2, num_workers=1):
                pass
        out = cell.output_dir(study.output_dir)
        out.mkdir(parents=True, exist_ok=True)
        write_record(out, {"task": "loaders", "metric": "children", "value": len(multiprocessing.active_children())})

    def summary(self, rec):
        return f"children: {rec['value']}"


def test_a_failed_cells_loader_workers_are_gone_before_the_next_cell(tmp_path):
    """The failure is the worker's own message (torch re-wraps it in its traceback). torch's
    re-raised error keeps the loader (and its worker process) alive through a reference cycle
    until a garbage collection, which then waits 5 s on it; the runner frees it when it reports
    the failure."""
    kind = register_kind(_Loaders())
    try:
        path = tmp_path / "s.yaml"
        path.write_text(f"output_dir: {tmp_path / 'out'}\nloaders: {{}}\n")
        failed = r"did not finish: loaders/bad \(unreadable image /data/x/3\.jpg: truncated\)"
        with pytest.raises(StudyError, match=failed):
            run_study(path, console=False)
    finally:
        unregister_kind(kind.name)
    assert read_record(tmp_path / "out" / "loaders" / "next" / "result.json")["value"] == 0


@pytest.fixture
def squares_kind():
    kind = register_kind(_Squares())
    yield kind
    unregister_kind(kind.name)


def test_a_task_kind_registered_outside_rdet_runs_in_a_study(tmp_path, squares_kind, capsys):
    """Adding a kind touches only its own module: the runner expands, runs, summarises and
    follows up a kind it has never heard of, beside a built-in one, and resumes it."""
    path = tmp_path / "s.yaml"
    path.write_text(f"""
output_dir: {tmp_path / 'out'}
commands: [{{name: hello, run: "echo hi"}}]
squares: {{ns: [2, 3]}}
""")
    study = load_study(path)
    assert [(c.kind, c.name, c.stage) for c in study.cells] == [
        ("command", "hello", "prepare"), ("square", "square/2", "transfer"), ("square", "square/3", "transfer")]
    run_study(path)
    console = capsys.readouterr().out
    out = tmp_path / "out"
    assert [read_record(out / n / "result.json")["value"] for n in ("square/2", "square/3", "square/sum")] == [4, 9, 13]
    assert re.search(r"cell 3/3 square square/3: done in \d+ s: squared: 9", console), console
    assert re.search(r"follow-up square square/sum: done in \d+ s: squared: 13", console), console
    (out / "square" / "3" / "result.json").unlink()
    (out / "square" / "sum" / "result.json").unlink()
    run_study(path)
    console = capsys.readouterr().out
    assert "square/2: finished before, skipped" in console and "cell 3/3 square square/3: done" in console
    assert read_record(out / "square" / "sum" / "result.json")["value"] == 13
    # once unregistered, its section is an unknown one (one line, before anything runs)
    unregister_kind("square")
    with pytest.raises(ConfigError, match="unknown study section.*squares"):
        load_study(path)
    register_kind(squares_kind)


def test_kind_registry_refuses_a_taken_name_or_section(squares_kind):
    with pytest.raises(ValueError, match="registered already"):
        register_kind(_Squares())

    class Other(_Squares):
        name = "other_square"

    with pytest.raises(ValueError, match="section 'squares' is expanded by another"):
        register_kind(Other())
    with pytest.raises(ConfigError, match="unknown study task kind 'nope'"):
        get_kind("nope")


def test_architecture_is_a_study_axis_of_any_registry_family(tmp_path):
    """``pretrain: archs`` crosses every run with torchvision and timm architectures; the cells
    pass MODEL.ARCH and the transfer cells follow each backbone; an unknown arch is one line."""
    path = tmp_path / "s.yaml"
    path.write_text("""
pretrain: {config: configs/pretrain_demo.yaml, archs: [resnet18, convnext_atto, vit_tiny], runs: [{name: e0, eps: 0},
           {name: e1, eps: 1, arch: swin_tiny}]}
backbones: [{name: rel, weights: w.pth, arch: convnext_tiny}]
classification: {datasets: [digits]}
""")
    study = load_study(path)
    pre = {c.name: c.params["opts"] for c in study.cells if c.kind == "pretrain"}
    assert pre == {"pretrain/resnet18_e0": ["MODEL.ARCH", "resnet18"],
                   "pretrain/convnext_atto_e0": ["MODEL.ARCH", "convnext_atto"],
                   "pretrain/vit_tiny_e0": ["MODEL.ARCH", "vit_tiny"], "pretrain/e1": ["MODEL.ARCH", "swin_tiny"]}
    cls = {c.name: c.deps for c in study.cells if c.kind == "classify"}
    assert cls["classify/digits/convnext_atto_e0/fixed/lr0.01_seed0"] == ("pretrain/convnext_atto_e0",)
    assert cls["classify/digits/rel/fixed/lr0.01_seed0"] == ()
    assert len(cls) == 5
    path.write_text("pretrain: {runs: [{name: e0, arch: resnet_9000}]}")
    with pytest.raises(ConfigError, match="pretrain run e0: unknown architecture 'resnet_9000'"):
        load_study(path)


class _Stopped(Exception):
    pass


def test_a_stop_request_checkpoints_at_the_next_step_and_resumes_exactly(tmp_path, monkeypatch):
    """What a Slurm cell does on its time-limit signal, in-process: ``rdet.core.preemption``
    asked for a stop in the middle of a step; the trainer writes a mid-epoch checkpoint right
    after that step, then runs the stop action; the resumed run ends with the uninterrupted
    run's weights."""
    import sys

    sys.path.insert(0, str(ROOT / "tests"))
    from helpers import digits_pretrain_cfg

    from rdet.core import preemption
    from rdet.engine import LAST, FINAL
    from rdet.engine.state import read_state
    from rdet.engine.trainer import EpochTrainer
    from rdet.tasks.pretrain import run

    extra = ["DATA.MAX_TRAIN", "128", "DATA.MAX_TEST", "32", "SOLVER.BATCH_SIZE", "32", "RUNTIME.LOG_EVERY", "1"]
    run(digits_pretrain_cfg(tmp_path / "plain", epochs=2, extra=extra))
    real, asked = EpochTrainer.optimize, []

    def stop():
        raise _Stopped

    def optimize(self, loss):
        real(self, loss)
        if self.epoch == 1 and self.batch_in_epoch == 1 and not asked:  # inside epoch 2's second step
            asked.append(1)
            preemption.request(stop)

    monkeypatch.setattr(EpochTrainer, "optimize", optimize)
    cfg = digits_pretrain_cfg(tmp_path / "stopped", epochs=2, extra=extra)
    with pytest.raises(_Stopped):
        run(cfg)
    assert not preemption.pending()
    pos = read_state(tmp_path / "stopped" / LAST)["position"]
    assert (pos["epoch"], pos["batches"]) == (1, 2)  # written right after the step that asked
    run(cfg, resume=True)
    a = torch.load(tmp_path / "stopped" / FINAL, weights_only=True)["model"]
    b = torch.load(tmp_path / "plain" / FINAL, weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_robustness_kind_evaluates_each_backbone_under_attack(tmp_path, capsys):
    """The robust-evaluation kind (``rdet.study.kinds.robustness``): one cell per backbone, PGD at
    every eps, its console summary; a finished study runs nothing again."""
    from rdet.backbones import get_spec

    torch.manual_seed(0)
    torch.save({"model": get_spec("resnet18").builder(10).state_dict(),
                "rdet": {"arch": "resnet18", "norm": "l2", "eps": 0.5}}, tmp_path / "r18.pth")
    path = tmp_path / "s.yaml"
    path.write_text(f"""
output_dir: {tmp_path / 'out'}
backbones: [{{name: r18, weights: {tmp_path / 'r18.pth'}}}]
robustness: {{dataset: digits, attacks: [pgd], opts: [DATA.TRAIN_SIZE, 16, DATA.TEST_RESIZE, 16, DATA.MAX_TEST, 32,
              ATTACK.EPS, "[0.25, 0.5]", ATTACK.STEPS, 2, SOLVER.BATCH_SIZE, 16, DATA.NUM_WORKERS, 2]}}
""")
    run_study(path)
    console = capsys.readouterr().out
    rec = read_record(tmp_path / "out" / "robustness" / "r18" / "result.json")
    assert rec["task"] == "robustness" and rec["n_images"] == 32
    assert [a["eps"] for a in rec["attacks"]] == [0.25, 0.5]
    assert all(a["robust_top1"] <= rec["clean_top1"] for a in rec["attacks"])
    worst = min(a["robust_top1"] for a in rec["attacks"])
    assert re.search(rf"cell 1/1 robustness robustness/r18: done in \d+ s: clean top-1 {rec['clean_top1']:.2f}%, "
                     rf"worst attack top-1 {worst:.2f}%", console), console
    run_study(path)
    assert "finished before, skipped" in capsys.readouterr().out


def test_a_requeue_whose_scontrol_is_stopped_by_it_exits_without_a_result():
    """``scontrol requeue`` killed by the SIGTERM of the requeue it sent: the job exits as on a
    requeue (SystemExit, which submitit saves no result for) instead of a saved failure; scontrol
    failing on its own, or any other error, still raises."""
    from rdet.study.jobs import requeue_then_exit

    def handler_raising(error):
        def handler(sig, frame):
            raise error
        return requeue_then_exit(handler)

    with pytest.raises(SystemExit) as stop:
        handler_raising(subprocess.CalledProcessError(-signal.SIGTERM, ["scontrol", "requeue", "42"]))(None, None)
    assert stop.value.code == -1
    with pytest.raises(subprocess.CalledProcessError):
        handler_raising(subprocess.CalledProcessError(1, ["scontrol", "requeue", "42"]))(None, None)
    with pytest.raises(subprocess.CalledProcessError):
        handler_raising(subprocess.CalledProcessError(-signal.SIGTERM, ["sbatch", "x"]))(None, None)
    calls = []
    requeue_then_exit(lambda sig, frame: calls.append(sig))(signal.SIGUSR2, None)
    assert calls == [signal.SIGUSR2]


def test_a_cells_job_builds_only_its_own_config_and_a_command_job_needs_no_torch(tmp_path):
    """The driver checks every cell before it submits any; a job reads the study again and runs
    its cell without re-checking the others: a command cell's job imports neither torch nor
    detectron2, and a typo put into another cell after submission stops only that cell."""
    ok = tmp_path / "ok.txt"
    study = tmp_path / "study.yaml"
    study.write_text(f"""
output_dir: {tmp_path / 'out'}
commands: [{{name: hello, run: "echo hi > {ok}"}}]
backbones: [{{name: std, weights: {tmp_path / 'std.pth'}}}]
classification: {{config: configs/classify_demo.yaml, datasets: [{{name: digits, opts: [SOLVER.EPOCH, 1]}}]}}
""")
    with pytest.raises(ConfigError, match=r"cell classify/digits/std/.*SOLVER\.EPOCH"):
        load_study(study)  # the driver's load
    job = ("import json, sys\n"
           "from rdet.study.runner import run_cell_job\n"
           "res = run_cell_job(sys.argv[1], 'hello')\n"
           "print(json.dumps([res, sorted(m for m in ('torch', 'detectron2') if m in sys.modules)]))\n")
    env = dict(os.environ, SUBMITIT_EXECUTOR="local", SUBMITIT_LOCAL_JOB_ID="1", SUBMITIT_LOCAL_NTASKS="1",
               SUBMITIT_LOCAL_JOB_NUM_NODES="1", SUBMITIT_LOCAL_NODEID="0", SUBMITIT_LOCAL_GLOBALID="0",
               SUBMITIT_LOCAL_LOCALID="0")
    proc = subprocess.run([sys.executable, "-c", job, str(study)], capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    res, heavy = json.loads(proc.stdout.strip().splitlines()[-1])
    assert res == {"status": "done", "message": ""} and heavy == []
    assert ok.read_text() == "hi\n" and read_record(tmp_path / "out" / "hello" / "result.json")["task"] == "command"
