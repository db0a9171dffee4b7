"""AutoAttack in rdet evaluate (pyautoattack): not above PGD and the same robust images as
pyautoattack itself; resumed == uninterrupted; two gloo processes == one; fewer than 10 classes;
RobustBench's ImageNet subset (order, labels, a missing image refused).

AutoAttack's full budget (100 APGD/FAB iterations, 5000 Square queries) takes ~200 s for 16
digits images at 16 px on 2 CPU cores, so these tests set ATTACK.AA_N_ITER / AA_N_QUERIES
(rdet.attacks.autoattack.reduce_budget, checked below against pyautoattack's own constructor);
the standard version's four attacks and their order are unchanged."""
import csv
import hashlib
import json
import os
import subprocess
import sys

import pytest
import torch
from PIL import Image

from rdet.attacks import autoattack as aa_mod
from rdet.backbones import create_classifier
from rdet.backbones.checkpoint import classifier_checkpoint
from rdet.config import get_evaluate_cfg
from rdet.core.errors import ConfigError
from rdet.data.build import datasets_from_cfg
from rdet.data.offline import digits_dataset
from rdet.data.robustbench import LIST_FILE, read_list
from rdet.data.transforms import test_transform
from rdet.engine.robust_eval import batch_seed
from rdet.tasks import robustness as ev

EPS = 0.02
N_ITER, N_QUERIES = 2, 20
_SMALL = ["DATA.DATASET", "digits", "DATA.TRAIN_SIZE", "16", "DATA.TEST_RESIZE", "16", "DATA.NUM_WORKERS", "2",
          "ATTACK.NORM", "linf", "ATTACK.EPS", f"[{EPS}]", "ATTACK.STEPS", "10", "ATTACK.TYPES", "['pgd', 'autoattack']",
          "ATTACK.AA_N_ITER", str(N_ITER), "ATTACK.AA_N_QUERIES", str(N_QUERIES)]


def _cfg(weights, out, *extra):
    cfg = get_evaluate_cfg()
    cfg.merge_from_list(["MODEL.WEIGHTS", str(weights), *_SMALL, "OUTPUT_DIR", str(out), *extra])
    return cfg


def _numbers(rec):
    return rec["clean_top1"], [(a["attack"], a["n_robust"], a["robust_top1"]) for a in rec["attacks"]]


def _digits(n):
    ds = digits_dataset(False, transform=test_transform(16, 16))
    return torch.stack([ds[i][0] for i in range(n)]), torch.tensor([ds[i][1] for i in range(n)])


def test_reduced_budget_is_what_pyautoattacks_constructor_gives():
    from pyautoattack.autopgd_base import APGDAttack

    model = create_classifier("resnet18", 10).eval()
    aa, info = aa_mod.build_autoattack(model, "linf", EPS, "standard", 10, torch.device("cpu"), N_ITER, N_QUERIES)
    ref = APGDAttack(model, n_iter=N_ITER, eps=EPS)
    for apgd in (aa.apgd, aa.apgd_targeted):
        assert [apgd.n_iter, apgd.n_iter_2, apgd.n_iter_min, apgd.size_decr] == \
               [ref.n_iter, ref.n_iter_2, ref.n_iter_min, ref.size_decr]
    assert aa.fab.n_iter == N_ITER and aa.square.n_queries == N_QUERIES
    assert info["sub_attacks"] == ["apgd-ce", "apgd-t", "fab-t", "square"] and not info["standard_budget"]


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_autoattack_not_above_pgd_and_same_robust_images_as_pyautoattack(tmp_path, digits_pretrained):
    weights = digits_pretrained[1] / "model_final.pth"
    cfg = _cfg(weights, tmp_path, "DATA.MAX_TEST", "16", "SOLVER.BATCH_SIZE", "8")
    _, test, _, _ = datasets_from_cfg(cfg.clone())  # the very images the evaluation reads
    rec = ev.run(cfg)
    pgd, aa = rec["attacks"]
    assert pgd["attack"] == "pgd" and aa["attack"] == "autoattack" and aa["n_images"] == 16
    assert aa["version"] == "standard" and aa["n_target_classes"] == 9 and aa["seed"] == 0
    assert aa["robust_top1"] <= pgd["robust_top1"] < rec["clean_top1"]
    # pyautoattack called directly on the same tensors, batch by batch with each batch's seed
    model = create_classifier("resnet18", 10, weights=str(weights)).eval()
    from pyautoattack import AutoAttack

    x = torch.stack([test[i][0] for i in range(16)])
    y = torch.tensor([test[i][1] for i in range(16)])
    robust = []
    for k in range(2):
        direct = AutoAttack(model, norm="Linf", eps=EPS, version="standard", seed=batch_seed(0, k), device="cpu")
        aa_mod.reduce_budget(direct, N_ITER, N_QUERIES)
        _, y_adv = direct.run_standard_evaluation(x[8 * k:8 * (k + 1)], y[8 * k:8 * (k + 1)], batch_size=8)
        robust += (y_adv == y[8 * k:8 * (k + 1)]).tolist()
    assert aa["n_robust"] == sum(robust)
    with open(tmp_path / "per_image.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    col = f"autoattack_standard_linf_{EPS:g}_robust"
    assert [int(r[col]) for r in rows] == [int(b) for b in robust]  # the same images, not only as many
    assert [int(r["label"]) for r in rows] == y.tolist()
    assert all(int(r[col]) <= int(r["clean_correct"]) for r in rows)


@pytest.mark.slow
def test_killed_autoattack_run_resumes_to_the_same_result(tmp_path, digits_pretrained, monkeypatch):
    weights = digits_pretrained[1] / "model_final.pth"
    extra = ["DATA.MAX_TEST", "12", "SOLVER.BATCH_SIZE", "4", "ATTACK.TYPES", "['autoattack']"]
    whole = ev.run(_cfg(weights, tmp_path / "whole", *extra))
    real, calls = aa_mod.run_autoattack, []

    def dying(*args, **kw):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args, **kw)

    monkeypatch.setattr(aa_mod, "run_autoattack", dying)
    with pytest.raises(KeyboardInterrupt):
        ev.run(_cfg(weights, tmp_path / "killed", *extra))
    state = tmp_path / "killed" / ev.STATE_NAME
    assert sorted(p.name for p in state.glob("batch_*.csv")) == ["batch_0.csv", "batch_1.csv"]
    assert not (tmp_path / "killed" / ev.RESULT_NAME).exists()
    # other settings are refused, naming the key, and leave the partial state as it was
    with pytest.raises(ConfigError, match=r"partial evaluation with other settings \(SEED 0 there vs 1 now\)"):
        ev.run(_cfg(weights, tmp_path / "killed", *extra, "SEED", "1"))
    calls.clear()
    monkeypatch.setattr(aa_mod, "run_autoattack", lambda *a, **k: (calls.append(1), real(*a, **k))[1])
    resumed = ev.run(_cfg(weights, tmp_path / "killed", *extra))
    assert len(calls) == 1 and resumed["resumed_batches"] == 2  # only the third batch ran again
    assert _numbers(resumed) == _numbers(whole)
    assert (tmp_path / "killed" / "per_image.csv").read_text() == (tmp_path / "whole" / "per_image.csv").read_text()
    assert not state.exists()


def _run(cmd, **kw):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.getcwd())
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, **kw)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_two_gloo_processes_give_the_same_result_as_one(tmp_path, digits_pretrained):
    args = ["--weights", digits_pretrained[1] / "model_final.pth", "--dataset", "digits", *_SMALL, "DATA.MAX_TEST",
            "12", "SOLVER.BATCH_SIZE", "4", "RUNTIME.DEVICE", "cpu", "--attack", "pgd", "autoattack"]  # nargs: last
    args = list(map(str, args))
    from rdet.cli.evaluate import build_cfg

    ev.run(build_cfg(args[:-3] + ["--output-dir", str(tmp_path / "one")] + args[-3:]))  # one process: this one
    _run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "rdet.cli.evaluate",
          *args, "--output-dir", str(tmp_path / "two")])
    one, two = (json.loads((tmp_path / d / "result.json").read_text()) for d in ("one", "two"))
    assert two["world_size"] == 2 and one["world_size"] == 1
    assert _numbers(one) == _numbers(two)
    assert (tmp_path / "one" / "per_image.csv").read_text() == (tmp_path / "two" / "per_image.csv").read_text()


def test_fewer_than_ten_classes_target_every_other_class(tmp_path, caplog):
    from pyautoattack import AutoAttack

    model = create_classifier("resnet18", 5).eval()
    x, _ = _digits(8)
    with torch.no_grad():
        y = model(x).argmax(1)  # every image correct, and a radius too small to fool any: all attacks run
    tiny = 1e-6
    plain = AutoAttack(model, norm="Linf", eps=tiny, version="standard", seed=0, device="cpu")
    aa_mod.reduce_budget(plain, 2, 10)
    with pytest.raises(IndexError):  # pyautoattack's 9 targets index past 5 logits
        plain.run_standard_evaluation(x, y, batch_size=8)
    runner = aa_mod.AutoAttackRunner(model, "linf", tiny, "standard", 5, torch.device("cpu"), 2, 10)
    assert runner.info["n_target_classes"] == 4
    x_adv, y_adv = runner(x, y, 0)
    assert (x_adv - x).abs().max() <= tiny + 1e-7 and torch.equal(y_adv, y)
    with pytest.raises(ConfigError, match="AutoAttack standard needs at least 4 classes"):
        aa_mod.check_classes("standard", 3)
    # through rdet evaluate: said in one line, recorded, and AMP named as not applying
    weights = tmp_path / "w5.pth"
    meta = {"arch": "resnet18", "norm": None, "eps": 0.0, "method": "standard", "dataset": "digits",
            "classes": [0, 1, 2, 3, 4]}
    torch.save(classifier_checkpoint(create_classifier("resnet18", 5), meta), weights)
    caplog.set_level("INFO", logger="rdet")
    rec = ev.run(_cfg(weights, tmp_path / "ev", "DATA.CLASSES", "[0, 1, 2, 3, 4]", "DATA.MAX_TEST", "8",
                      "ATTACK.TYPES", "['autoattack']", "ATTACK.AA_N_ITER", "2", "ATTACK.AA_N_QUERIES", "10",
                      "RUNTIME.AMP", "bf16"))
    assert rec["attacks"][0]["n_target_classes"] == 4 and rec["attacks"][0]["precision"] == "fp32"
    assert "5 classes, so APGD-T and FAB-T target every other class (4) instead of 9" in caplog.text
    assert "AutoAttack runs in fp32: RUNTIME.AMP bf16 applies to the clean pass and PGD only" in caplog.text


# --- RobustBench's ImageNet subset -----------------------------------------------------------
def test_shipped_list_is_robustbenchs():
    names = read_list()
    assert len(names) == 5000 == len(set(names)) and len({n.split("/")[0] for n in names}) == 997
    # md5 of RobustBench's helper_files/imagenet_test_image_ids.txt (commit 78fcc9e; no final newline)
    assert hashlib.md5("\n".join(names).encode()).hexdigest() == "8de8bbba2cf05cb54190e49247375985"
    assert names[0] == "n09468604/ILSVRC2012_val_00015253.JPEG" and LIST_FILE.parent.name == "data"


def _imagenet_folder(root, names, wnids):
    for w in wnids:
        (root / "val" / w).mkdir(parents=True, exist_ok=True)
    for i, n in enumerate(names):
        Image.new("RGB", (20, 18), (40 * i % 256, 90, 200)).save(root / "val" / n, "JPEG")


@pytest.mark.slow
def test_robustbench_subset_missing_image_is_one_line_nothing_written(tmp_path):
    names = read_list()
    _imagenet_folder(tmp_path / "in", names[:2], {n.split("/")[0] for n in names})
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "rdet", "evaluate", "--weights", "resnet18_linf_eps4", "--dataset",
                           "imagenet", "--data-root", str(tmp_path / "in"), "--subset", "robustbench", "--attack",
                           "autoattack", "--norm", "linf", "--eps", "0.0156863", "--output-dir", str(out)],
                          capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=os.getcwd()))
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr[-2000:]
    assert f"RobustBench's subset lists {names[2]}, which is not under {tmp_path / 'in' / 'val'}" in lines[0]
    assert "4997 more of the 5000 listed images are missing" in lines[0]
    assert not out.exists()


def test_robustbench_subset_order_and_labels(tmp_path):
    names = read_list()
    wnids = sorted({n.split("/")[0] for n in names} | {"n00000001", "n00000002", "n00000003"})  # 1000 folders
    picked = [names[7], names[0], names[3]]  # not in sorted order: the list's order is kept
    _imagenet_folder(tmp_path / "in", picked, wnids)
    listing = tmp_path / "ids.txt"
    listing.write_text("\n".join(picked) + "\n")
    weights = tmp_path / "r18.pth"
    torch.save(classifier_checkpoint(create_classifier("resnet18", 1000), {"arch": "resnet18", "dataset": "imagenet"}),
               weights)
    cfg = get_evaluate_cfg()
    cfg.merge_from_list(["MODEL.WEIGHTS", str(weights), "DATA.ROOT", str(tmp_path / "in"), "EVAL.SUBSET", "robustbench",
                         "EVAL.SUBSET_LIST", str(listing), "DATA.TRAIN_SIZE", "16", "DATA.TEST_RESIZE", "16",
                         "DATA.NUM_WORKERS", "2", "ATTACK.NORM", "linf", "ATTACK.EPS", "[0.01]", "ATTACK.STEPS", "1",
                         "OUTPUT_DIR", str(tmp_path / "out")])
    rec = ev.run(cfg)
    assert rec["subset"] == "robustbench" and rec["n_images"] == 3 and rec["attacks"][0]["n_images"] == 3
    with open(tmp_path / "out" / "per_image.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["image_id"] for r in rows] == picked
    assert [int(r["label"]) for r in rows] == [wnids.index(p.split("/")[0]) for p in picked]
    with pytest.raises(ConfigError, match="does not go with DATA.DATASET digits"):
        ev.run(_cfg(weights, tmp_path / "never", "EVAL.SUBSET", "robustbench"))


@pytest.mark.slow
def test_real_record_is_compared_with_robustbench_on_what_differs_only(tmp_path):
    """A record as ``rdet evaluate`` writes it for a RobustBench model, measured as RobustBench does
    except for its size (the first 8 listed images) and AutoAttack's budget: the report names those
    two differences and nothing else (the standard's 9 target classes, the model's own Res256Crop224
    preprocessing, the fp32 clean pass and eps 4/255 are RobustBench's)."""
    import torchvision

    from rdet.report.robustness import robustness_rows

    names = read_list()
    _imagenet_folder(tmp_path / "in", names[:8], {n.split("/")[0] for n in names} | {"n00000001", "n00000002", "n00000003"})
    weights = tmp_path / "resnet18_linf_eps4.pth"  # the paper's release, named as the catalog names it
    torch.save(torchvision.models.resnet18().state_dict(), weights)
    cfg = get_evaluate_cfg()
    cfg.merge_from_list(["MODEL.WEIGHTS", str(weights), "DATA.ROOT", str(tmp_path / "in"), "EVAL.SUBSET", "robustbench",
                         "DATA.MAX_TEST", "8", "DATA.NUM_WORKERS", "2", "ATTACK.TYPES", "['autoattack']",
                         "ATTACK.NORM", "linf", "ATTACK.EPS", f"[{4 / 255!r}]", "ATTACK.AA_N_ITER", "1",
                         "ATTACK.AA_N_QUERIES", "5", "SOLVER.BATCH_SIZE", "8", "OUTPUT_DIR", str(tmp_path / "out")])
    ev.run(cfg)
    rec = json.loads((tmp_path / "out" / "result.json").read_text())
    assert rec["preprocessing"]["resize"] == 256 and rec["preprocessing"]["crop"] == 224
    assert rec["preprocessing"]["interpolation"] == "bilinear" and rec["preprocessing"]["overrides"] == []
    assert rec["attacks"][0]["n_target_classes"] == 9 and rec["backbone"]["input_norm"]["name"] == "imagenet"
    (row,) = robustness_rows([rec])
    assert row["robustbench_id"] == "Salman2020Do_R18"
    assert row["robustbench_label"] == "8 images; attack AutoAttack standard, reduced budget (1 iterations)"
    assert row["delta_robustbench"] is None
