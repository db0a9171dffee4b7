"""Robust evaluation: accuracy falls as eps grows, the CLI writes its JSON, bad input fails."""
import json
import subprocess
import sys

from rdet import evaluate as ev
from rdet.config import get_evaluate_cfg


def test_accuracy_falls_with_eps(tmp_path, digits_pretrained):
    _, out = digits_pretrained
    cfg = get_evaluate_cfg()
    cfg.merge_from_list(["MODEL.WEIGHTS", str(out / "model_final.pth"), "DATA.DATASET", "digits",
                         "DATA.TRAIN_SIZE", "16", "DATA.TEST_RESIZE", "16", "DATA.NUM_WORKERS", "0",
                         "DATA.MAX_TEST", "200", "ATTACK.NORM", "linf", "ATTACK.EPS", "[0.02, 0.1]", "ATTACK.STEPS", "5",
                         "OUTPUT_DIR", str(tmp_path)])
    res = ev.run(cfg)
    accs = [r["top1"] for r in res["results"]]
    assert [r["eps"] for r in res["results"]] == [0.0, 0.02, 0.1]
    assert accs[0] > 60 and accs[0] > accs[1] > accs[2]
    assert json.loads((tmp_path / "robustness.json").read_text())["arch"] == "resnet18"


def test_cli_bad_weights(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "rdet.evaluate", "--weights", str(tmp_path / "no.pth"),
                           "--dataset", "digits", "--output-dir", str(tmp_path / "o")], capture_output=True, text=True)
    assert proc.returncode == 2 and "no such file" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()
