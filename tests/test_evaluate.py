"""Robust evaluation: accuracy falls as eps grows; the record names the backbone; a head that is not
for the data is refused (or fitted on request); the help's example runs; every bad input is one
line, exit 2, nothing written."""
import json
import os
import subprocess
import sys

import pytest
import torch
from helpers import cli_refusal

from rdet.tasks import robustness as ev
from rdet.backbones import create_classifier
from rdet.backbones.checkpoint import classifier_checkpoint
from rdet.config import CONFIG_DIR, get_evaluate_cfg
from rdet.core.errors import ConfigError
from rdet.core.runlock import LOCK_NAME

_SMALL = ["DATA.DATASET", "digits", "DATA.TRAIN_SIZE", "16", "DATA.TEST_RESIZE", "16", "DATA.NUM_WORKERS", "0",
          "DATA.MAX_TEST", "200", "ATTACK.NORM", "linf", "ATTACK.STEPS", "5"]


def _cfg(weights, out, *extra):
    cfg = get_evaluate_cfg()
    cfg.merge_from_list(["MODEL.WEIGHTS", str(weights), *_SMALL, "OUTPUT_DIR", str(out), *extra])
    return cfg


def test_accuracy_falls_with_eps_and_record_names_backbone(tmp_path, digits_pretrained):
    _, out = digits_pretrained
    res = ev.run(_cfg(out / "model_final.pth", tmp_path, "ATTACK.EPS", "[0.02, 0.1]"))
    assert "results" not in res and "attack" not in res  # one copy of each number: clean_top1 and attacks
    accs = [res["clean_top1"]] + [a["robust_top1"] for a in res["attacks"]]
    assert [a["eps"] for a in res["attacks"]] == [0.02, 0.1]
    assert accs[0] > 60 and accs[0] > accs[1] > accs[2]
    rec = json.loads((tmp_path / "result.json").read_text())
    assert rec["backbone"]["arch"] == "resnet18" and rec["backbone"]["method"] == "standard"
    assert rec["backbone"]["eps"] == 0.0 and rec["backbone"]["trained_on"] == "digits"
    assert rec["head"] == {"source": "checkpoint"}
    assert sorted(os.listdir(tmp_path)) == ["per_image.csv", "result.json"]  # no lock file, no partial state after the run


def test_head_for_other_classes_refused_before_any_work(tmp_path, digits_pretrained):
    _, out = digits_pretrained
    target = tmp_path / "never"
    with pytest.raises(ConfigError, match=r"the checkpoint's head has 10 classes but digits classes \[0, 1, 2\] "
                                          r"has 3: .*random head; pass --fit-head"):
        ev.run(_cfg(out / "model_final.pth", target, "DATA.CLASSES", "[0, 1, 2]"))
    assert not target.exists()
    # the same number of classes but another dataset's head: refused too
    assert "trained on digits, not fashion_mnist" in ev.head_mismatch(10, {"dataset": "digits", "classes": []},
                                                                       _cfg("x", target, "DATA.DATASET",
                                                                            "fashion_mnist"), 10)
    assert ev.head_mismatch(10, {"dataset": "digits", "classes": list(range(10))}, _cfg("x", target), 10) is None


def test_fit_head_on_request(tmp_path, digits_pretrained):
    _, out = digits_pretrained
    res = ev.run(_cfg(out / "model_final.pth", tmp_path, "DATA.CLASSES", "[0, 1, 2]", "EVAL.FIT_HEAD", "True",
                      "SOLVER.EPOCHS", "8", "SOLVER.LR_STEP_EPOCHS", "6", "SOLVER.BATCH_SIZE", "64",
                      "ATTACK.EPS", "[0.02]"))
    head = json.loads((tmp_path / "result.json").read_text())["head"]
    assert head["source"].startswith("fitted") and "has 10 classes but digits classes [0, 1, 2] has 3" in head["reason"]
    assert head["epochs"] == 8 and head["views"] == 1 and head["train_images"] > 300
    assert res["clean_top1"] > 80  # 3 classes: a random head sits near 33%


@pytest.mark.slow
def test_help_example_with_training_config(tmp_path, fashion_mnist_root, capsys):
    """`--config-file configs/pretrain_demo.yaml` (a pretraining config) as in the module's help:
    its DATA section (Fashion-MNIST classes 0-4 at 32 px) is used, its training sections are not."""
    weights = tmp_path / "model_final.pth"
    meta = {"arch": "resnet18", "norm": None, "eps": 0.0, "method": "standard", "dataset": "fashion_mnist",
            "classes": [0, 1, 2, 3, 4]}
    torch.save(classifier_checkpoint(create_classifier("resnet18", 5), meta), weights)
    from rdet.cli.evaluate import main

    code = main([str(a) for a in ("--weights", weights, "--dataset", "fashion_mnist", "--config-file",
                                  CONFIG_DIR / "pretrain_demo.yaml", "DATA.MAX_TEST", "64", "--steps", "2",
                                  "--output-dir", tmp_path / "ev", "--norm", "linf", "--eps", "0.01", "0.03")])
    printed = capsys.readouterr()
    assert code == 0, printed.err[-3000:]
    rec = json.loads((tmp_path / "ev" / "result.json").read_text())
    assert rec["dataset"] == "fashion_mnist" and rec["classes"] == [0, 1, 2, 3, 4]
    assert [a["eps"] for a in rec["attacks"]] == [0.01, 0.03] and "at 32px" in rec["data_note"]
    assert "trained: standard" in printed.out


@pytest.mark.slow
def test_cli_bad_inputs_one_line_nothing_written(tmp_path, capsys):
    """The command's own main, in this process (what the console script and ``python -m rdet
    evaluate`` call; test_packaging runs those with a bad flag)."""
    from rdet.cli.evaluate import main

    def refusal(*args):
        return cli_refusal(main, capsys, *args)

    weights = tmp_path / "w.pth"
    torch.save({}, weights)
    out = tmp_path / "o"
    line = refusal("--weights", tmp_path / "no.pth", "--dataset", "digits", "--output-dir", out)
    assert "no such file and not a catalog model" in line
    line = refusal("--weights", "resnet50_l2_eps30", "--dataset", "digits", "--output-dir", out)
    assert "did you mean resnet50_l2_eps3" in line
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    line = refusal("--weights", weights, "--dataset", "digits", "--output-dir", blocker / "out")
    assert f"cannot be created: {blocker} is not a folder" in line
    line = refusal("--weights", weights, "--dataset", "digits", "--output-dir", "/proc/rdet_ev")
    assert "output folder /proc/rdet_ev cannot be created in /proc" in line
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("DATA:\n  DATASET: digits\n  CLASSES: [0, 1\n")
    line = refusal("--weights", weights, "--config-file", bad_yaml, "--output-dir", out)
    assert f"{bad_yaml}:" in line and "malformed YAML" in line
    line = refusal("--weights", weights, "--dataset", "digits", "--output-dir", out, "--eps", "-1")
    assert "ATTACK.EPS items must be >= 0, not -1.0" in line
    assert sorted(os.listdir(tmp_path)) == ["a_file", "bad.yaml", "w.pth"]


@pytest.mark.slow
def test_cli_second_run_on_a_held_folder(tmp_path, digits_pretrained, capsys):
    """A folder held by another process (a real one: the lock is the OS's) is refused by the
    command's main, run here, in one line naming the holder."""
    from rdet.cli.evaluate import main

    _, out = digits_pretrained
    folder = tmp_path / "held"
    folder.mkdir()
    hold = ("import sys; from rdet.core.runlock import output_lock\n"
            "with output_lock(sys.argv[1]):\n    print('locked', flush=True); sys.stdin.readline()\n")
    holder = subprocess.Popen([sys.executable, "-c", hold, str(folder)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        line = cli_refusal(main, capsys, "--weights", out / "model_final.pth", "--dataset", "digits",
                           "DATA.TRAIN_SIZE", "16", "DATA.TEST_RESIZE", "16", "--output-dir", folder)
        assert f"in use by another rdet run (pid {holder.pid})" in line
        assert sorted(os.listdir(folder)) == [LOCK_NAME]
    finally:
        holder.communicate("\n")
