"""rdet.select: the validation split, the feature cache's keys, resuming an interrupted selection,
catalog models served from a file:// mirror, the L-BFGS head, and one-line refusals."""
import dataclasses
import hashlib
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import Subset, TensorDataset

from rdet.backbones import CATALOG, get_spec
from rdet.backbones.robustness_format import save_robustness_checkpoint
from rdet.config import merge_config
from rdet.data.classification import targets_of
from rdet.data.offline import digits_dataset
from rdet.data.validation import check_disjoint, split_indices
from rdet.core.errors import DatasetError
from rdet.core.records import read_record
from rdet.select import fixed, get_select_cfg, select_one
from rdet.cli.select import main as select_main
from rdet.select.heads import fit_logreg

# digits at 16 px, a small subset, one view, short heads: each selection takes a few seconds
SMALL = ["DATA.TRAIN_SIZE", "16", "DATA.TEST_RESIZE", "16", "DATA.CROP_SCALE_MIN", "0.7", "DATA.NUM_WORKERS", "0",
         "DATA.MAX_TRAIN", "250", "DATA.MAX_TEST", "100", "SOLVER.EPOCHS", "2", "SOLVER.LR_STEP_EPOCHS", "1",
         "TRANSFER.LR_GRID", "[0.1]", "SELECT.VIEWS", "1", "SELECT.LOGREG_L2", "[0.001]",
         "SELECT.LOGREG_MAX_ITER", "30"]


def _resnet18_weights(seed: int, zero: bool = False):
    """Randomly initialised ResNet-18 weights; ``zero``: every conv weight 0 (constant features)."""
    torch.manual_seed(seed)
    sd = get_spec("resnet18").builder(1000).state_dict()
    if zero:
        sd = {k: torch.zeros_like(v) if k.endswith("weight") and v.dim() == 4 else v for k, v in sd.items()}
    return sd


def _resnet18_file(path: Path, seed: int) -> Path:
    torch.save(_resnet18_weights(seed), path)  # the plain torchvision layout
    return path


def _cfg(*opts):
    return merge_config(get_select_cfg(), None, ["DATA.DATASET", "digits", *SMALL, *opts])


# --- validation split -----------------------------------------------------------------------------
def test_validation_split_is_stratified_seeded_and_inside_training():
    targets = targets_of(digits_dataset(True))
    tr, va = split_indices(targets, 0.2, seed=0)
    assert not set(tr) & set(va) and sorted(tr + va) == list(range(len(targets)))
    assert len(va) == round(0.2 * len(targets))
    for c in set(targets):
        n_c = targets.count(c)
        assert abs(sum(targets[i] == c for i in va) - 0.2 * n_c) <= 1  # every class gives its share
    assert split_indices(targets, 0.2, seed=0) == (tr, va)  # same seed, same split
    assert split_indices(targets, 0.2, seed=1)[1] != va  # another seed, another split
    assert len(split_indices(targets, 100, seed=0)[1]) == 100  # a count instead of a fraction
    for bad in (0, len(targets), 1.5 * len(targets)):
        with pytest.raises(DatasetError, match="validation"):
            split_indices(targets, bad, seed=0)


def test_validation_is_disjoint_from_test():
    base = TensorDataset(torch.zeros(100, 1), torch.arange(100) % 4)
    train, test = Subset(base, list(range(80))), Subset(base, list(range(80, 100)))  # one base, Caltech-style
    _, va = split_indices(targets_of(train), 0.25, seed=0)
    check_disjoint(Subset(train, va), test)
    leaky_test = Subset(base, list(range(60, 100)))  # shares 20 images with training
    with pytest.raises(DatasetError, match="also test images"):
        check_disjoint(Subset(train, list(range(80))), leaky_test)
    # the selection's own split: validation images are training images, none of them test images
    data = fixed.selection_data(_cfg())
    assert len(data["train_idx"]) + len(data["val_idx"]) == len(data["train_plain"]) == 250
    assert not set(data["train_idx"]) & set(data["val_idx"])


# --- feature cache keys ---------------------------------------------------------------------------
def _image_folder(root: Path, per_class=(10, 4), seed=0) -> Path:
    rng = np.random.default_rng(seed)
    for split, n in zip(("train", "test"), per_class):
        for c in ("a", "b", "c"):
            (root / split / c).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                arr = (rng.random((16, 16, 3)) * 80 + 60 * "abc".index(c)).astype(np.uint8)
                Image.fromarray(arr).save(root / split / c / f"{i}.png")
    return root


@pytest.fixture
def count_extractions(monkeypatch):
    calls = []
    real = fixed._extract

    def counting(*a, **k):
        calls.append(1)
        return real(*a, **k)

    monkeypatch.setattr(fixed, "_extract", counting)
    return calls


@pytest.mark.timeout(300)
def test_cache_keys_never_reuse_stale_features(tmp_path, count_extractions):
    root = _image_folder(tmp_path / "imgs")
    model = _resnet18_file(tmp_path / "model.pth", seed=0)
    cache = tmp_path / "cache"

    def run(*opts):
        cfg = merge_config(get_select_cfg(), None, ["DATA.DATASET", "imagefolder", "DATA.ROOT", str(root), *SMALL,
                                                    "DATA.VAL_SIZE", "0.25", *opts])
        return select_one(cfg, str(model), cache, "m")

    first = run()
    assert len(count_extractions) == 1 and not first["cache"]["hit"]
    again = run()
    assert len(count_extractions) == 1 and again["cache"]["hit"]  # same inputs: the cache serves
    assert again["candidates"] == [dict(c, time_s=c2["time_s"]) for c, c2 in zip(first["candidates"], again["candidates"])]

    _resnet18_file(model, seed=1)  # same path, other weights
    run()
    assert len(count_extractions) == 2
    run("DATA.CLASSES", "[0, 1]")  # other classes
    assert len(count_extractions) == 3
    img = root / "train" / "b" / "3.png"
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(img)  # one image changed in place
    os.utime(img, ns=(1, 1))
    run()
    assert len(count_extractions) == 4
    run("DATA.VAL_SEED", "1")  # another validation split
    assert len(count_extractions) == 5
    run()  # back to the previous settings: that entry is still valid
    assert len(count_extractions) == 5
    assert len(list(cache.glob("m-*.pt"))) == 5


# --- resuming an interrupted selection ------------------------------------------------------------
@pytest.mark.timeout(400)
def test_interrupted_selection_resumes_without_recomputing(tmp_path, monkeypatch, count_extractions):
    models = [str(_resnet18_file(tmp_path / f"m{i}.pth", seed=i)) for i in range(2)]
    out = tmp_path / "sel"
    argv = ["--dataset", "digits", "--models", *models, "--output-dir", str(out), *SMALL]
    calls = []
    real_sgd = fixed.sgd_candidates

    def interrupt_second_cell(*a, **k):  # the 2nd model is stopped after its features are cached
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_sgd(*a, **k)

    monkeypatch.setattr(fixed, "sgd_candidates", interrupt_second_cell)
    assert select_main(argv) == 130  # interrupted
    rec0, rec1 = (out / "select" / m / "result.json" for m in ("m0", "m1"))
    assert rec0.is_file() and not rec1.exists() and len(count_extractions) == 2
    stamp = rec0.stat().st_mtime_ns

    assert select_main(argv) == 0
    assert len(calls) == 3  # m0 finished: not run again; m1 resumed ...
    assert len(count_extractions) == 2  # ... from its cached features
    assert rec0.stat().st_mtime_ns == stamp and read_record(rec1)["cache"]["hit"]
    lines = (out / "ranking.csv").read_text().splitlines()
    assert lines[0].startswith("rank,model") and sorted(l.split(",")[1] for l in lines[1:]) == ["m0", "m1"]


# --- catalog names served from a local mirror -----------------------------------------------------
@pytest.mark.timeout(400)
def test_catalog_models_from_a_file_mirror(tmp_path, monkeypatch, capsys):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    for name, zero in (("resnet18_l2_eps0", True), ("resnet18_l2_eps3", False)):  # eps0: useless, must rank last
        path = mirror / CATALOG[name].file_name
        save_robustness_checkpoint(_resnet18_weights(0, zero), "resnet18", path)
        sha = hashlib.sha256(path.read_bytes()).hexdigest()
        monkeypatch.setitem(CATALOG, name, dataclasses.replace(CATALOG[name], sha256=sha))  # downloads are verified
    monkeypatch.setenv("RDET_WEIGHTS_URL", mirror.as_uri())
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    out = tmp_path / "sel"
    assert select_main(["--dataset", "digits", "--models", "resnet18_l2_eps[03]", "--output-dir", str(out), *SMALL]) == 0
    hub = tmp_path / "torch" / "hub" / "checkpoints" / "rdet"
    assert sorted(p.name for p in hub.iterdir()) == ["resnet18_l2_eps0.ckpt", "resnet18_l2_eps3.ckpt"]
    rows = [l.split(",") for l in (out / "ranking.csv").read_text().splitlines()[1:]]
    assert [(r[1], r[2], r[3], r[4]) for r in rows] == [("resnet18_l2_eps3", "resnet18", "l2", "3"),
                                                       ("resnet18_l2_eps0", "resnet18", "-", "0")]  # standard: no norm
    assert float(rows[0][6]) > 60 > 25 > float(rows[1][6])  # informative features vs chance (10 classes)
    assert (out / "val_vs_eps.png").stat().st_size > 1000 and (out / "ranking.md").is_file()
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("best backbone for digits: resnet18_l2_eps3 (resnet18, l2 eps 3)")


# --- the L-BFGS head -------------------------------------------------------------------------------
def test_logreg_fits_and_penalty_shrinks_weights():
    gen = torch.Generator().manual_seed(0)
    centers = torch.randn(4, 20, generator=gen) * 3
    y = torch.arange(400) % 4
    x = centers[y] + torch.randn(400, 20, generator=gen) + 50  # offset: the folding must undo it
    fits = list(fit_logreg(x, y, 4, [1.0, 1e-4], max_iter=100))
    assert [l2 for l2, _, _ in fits] == [1.0, 1e-4]  # strongest first
    norms = [head.weight.norm().item() for _, head, _ in fits]
    assert norms[0] < norms[1]
    acc = (fits[1][1](x).argmax(1) == y).float().mean().item()
    assert acc > 0.97


# --- refusals ---------------------------------------------------------------------------------------
def test_bad_inputs_are_one_line_before_any_work(tmp_path, capsys):
    out = tmp_path / "never"
    for argv, match in ((["--models", "resnet18_l2_eps42", "--dataset", "digits"], "neither a file nor a catalog"),
                        (["--models", "nosuch_*", "--dataset", "digits"], "matches no catalog model"),
                        (["--models", "resnet18_l2_eps3", "--archs", "resnet50"], "no model left"),
                        (["--models", "resnet18_l2_eps3", "--dataset", "cifar10", "--data-root", str(tmp_path)],
                         "rdet never downloads datasets")):
        assert select_main([*argv, "--output-dir", str(out)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and match in err[0], err
        assert not out.exists()


@pytest.mark.timeout(300)
def test_other_settings_in_the_same_folder_are_refused(tmp_path, capsys):
    model = str(_resnet18_file(tmp_path / "m.pth", seed=0))
    out = tmp_path / "sel"
    argv = ["--dataset", "digits", "--models", model, "--output-dir", str(out), *SMALL]
    assert select_main(argv) == 0
    capsys.readouterr()
    assert select_main(argv[:-2] + ["SELECT.LOGREG_MAX_ITER", "20"]) == 2
    assert "holds a selection with other settings (select differ)" in capsys.readouterr().err


# --- --full-network --------------------------------------------------------------------------------
@pytest.mark.timeout(400)
def test_full_network_chooses_lr_on_validation(tmp_path, capsys):
    model = str(_resnet18_file(tmp_path / "m.pth", seed=0))
    out = tmp_path / "sel"
    argv = ["--dataset", "digits", "--models", model, "--output-dir", str(out), "--full-network", "--top-k", "1",
            *SMALL, "TRANSFER.LR_GRID", "[0.1, 0.01]", "SOLVER.EPOCHS", "1"]
    assert select_main(argv) == 0
    recs = {p.parent.relative_to(out / "full_network" / "classify").as_posix(): read_record(p)
            for p in (out / "full_network" / "classify").rglob("result.json")}
    assert sorted(recs) == [f"{s}/m/full/lr{lr}_seed0" for s in ("test", "val") for lr in ("0.01", "0.1")]
    n_val = read_record(out / "select" / "m" / "result.json")["n_val"]
    assert all("validation: 50 of the 250" in r["data_note"] for k, r in recs.items() if k.startswith("val/"))
    assert n_val == 50 and not any("validation" in r["data_note"] for k, r in recs.items() if k.startswith("test/"))
    val = {r["lr"]: r["value"] for k, r in recs.items() if k.startswith("val/")}
    chosen = max(sorted(val), key=lambda lr: val[lr])
    test = next(r["value"] for k, r in recs.items() if k == f"test/m/full/lr{chosen:g}_seed0")
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last == (f"best backbone after full-network fine-tuning: m (lr {chosen:g}): validation {val[chosen]:.2f}%, "
                    f"test {test:.2f}%")


def test_full_network_refuses_when_classify_would_not_use_the_validation_split(tmp_path, monkeypatch):
    """Until (or if ever) rdet.classify ignores DATA.VAL_SIZE, its 'validation' runs would silently
    evaluate on the test set: refused before anything runs."""
    from rdet.select import full

    monkeypatch.setattr(full, "datasets_from_cfg", lambda cfg: (None, list(range(450)), 10, ""))
    out = tmp_path / "sel"
    argv = ["--dataset", "digits", "--models", str(_resnet18_file(tmp_path / "m.pth", 0)), "--output-dir", str(out),
            "--full-network", *SMALL]
    assert select_main(argv) == 2
    assert not out.exists()


def test_paper_curve_only_for_the_papers_datasets():
    from rdet.select.ranking import paper_curve

    c10 = paper_curve({"dataset": "cifar10", "classes": []}, "resnet50")  # Table 8: CIFAR-10, ResNet-50
    assert (0.0, 79.61) in c10 and (3.0, 94.77) in c10 and max(c10, key=lambda p: p[1])[0] == 3.0
    assert paper_curve({"dataset": "cifar10", "classes": [], "downscale": 32}, "resnet18")[0] == (0.0, 76.02)  # Table 10
    assert paper_curve({"dataset": "cifar10", "classes": [3, 5]}, "resnet50") is None  # a class subset is not CIFAR-10
    assert paper_curve({"dataset": "digits", "classes": []}, "resnet18") is None


def test_an_unreadable_feature_cache_entry_is_extracted_again(tmp_path, caplog):
    """A truncated or garbage cache file is a warning and a fresh extraction, not a traceback."""
    import logging

    from rdet.select.cache import key_digest, load_or_extract

    key = {"dtype": "float32", "model": "m"}
    path = tmp_path / f"m-{key_digest(key)[:20]}.pt"
    path.write_bytes(b"PK\x03\x04 truncated zip")
    calls = []

    def extract():
        calls.append(1)
        return {"test": torch.ones(2, 3), "test_labels": torch.tensor([0, 1])}

    with caplog.at_level(logging.WARNING):
        out = load_or_extract(tmp_path, "m", key, extract)
    assert calls == [1] and not out["hit"] and torch.equal(out["test"], torch.ones(2, 3))
    assert f"feature cache {path} is unreadable" in caplog.text
    again = load_or_extract(tmp_path, "m", key, extract)  # the rewritten entry now loads
    assert calls == [1] and again["hit"]


# --- transferability estimators (--estimator) ---------------------------------------------------------
@pytest.mark.timeout(400)
def test_estimators_score_the_cached_features_beside_the_ranking(tmp_path, count_extractions):
    """logme, knn and leep on two models: their columns beside the validation ranking, equal to the
    estimators run on the cache entries themselves (leep through each file's own 1000-class head);
    then other estimators on the finished selection: no cell reruns, no extraction."""
    import json

    from rdet.select import estimators as est
    from rdet.select.scoring import cached_features

    models = [str(_resnet18_file(tmp_path / f"m{i}.pth", seed=i)) for i in range(2)]
    out = tmp_path / "sel"
    argv = ["--dataset", "digits", "--models", *models, "--output-dir", str(out), "--estimator", "logme", "knn", "leep",
            *SMALL, "SELECT.KNN_K", "5", "DATA.NUM_WORKERS", "2"]  # features through loader workers
    assert select_main(argv) == 0
    rows = [dict(zip(lines[0], r)) for lines in [[l.split(",") for l in (out / "ranking.csv").read_text().splitlines()]]
            for r in lines[1:]]
    assert list(rows[0])[-6:] == ["logme", "logme_rank", "knn", "knn_rank", "leep", "leep_rank"]
    saved = json.loads((out / "estimators.json").read_text())
    assert saved["estimators"] == ["linear", "logme", "knn", "leep"] and saved["knn_k"] == 5
    for i in range(2):
        rec = read_record(out / "select" / f"m{i}" / "result.json")
        f, y = cached_features(rec)
        assert len(f) == rec["n_train"] + rec["n_val"] == 250
        got = saved["scores"][f"m{i}"]
        assert got["logme"]["score"] == pytest.approx(est.logme(f, y), rel=1e-9)
        assert got["knn"]["score"] == pytest.approx(est.knn(f, y, k=5), rel=1e-9)
        fc = torch.load(models[i])
        logits = torch.from_numpy(f) @ fc["fc.weight"].double().T + fc["fc.bias"].double()
        assert got["leep"]["score"] == pytest.approx(est.leep(f, y, source_probs=logits.softmax(1)), rel=1e-6)
        assert got["linear"]["score"] == rec["val_value"] and all(v["time_s"] >= 0 for v in got.values())
    for name in ("logme", "knn", "leep"):  # rank 1 = the higher score
        by_rank = sorted(rows, key=lambda r: int(r[f"{name}_rank"]))
        assert float(by_rank[0][name]) >= float(by_rank[1][name])
    assert "## Transferability estimators" in (out / "ranking.md").read_text()
    stamps = [(out / "select" / m / "result.json").stat().st_mtime_ns for m in ("m0", "m1")]

    # the same selection, other estimators: scored from the cache in seconds, cells untouched
    # (SELECT.KNN_K dropped: a scoring key, not one of the cells' settings)
    assert select_main(argv[:argv.index("--estimator")] + ["--estimator", "hscore", "sfda", *SMALL,
                                                           "DATA.NUM_WORKERS", "2"]) == 0
    assert len(count_extractions) == 2
    assert [(out / "select" / m / "result.json").stat().st_mtime_ns for m in ("m0", "m1")] == stamps
    header = (out / "ranking.csv").read_text().splitlines()[0].split(",")
    assert header[-4:] == ["hscore", "hscore_rank", "sfda", "sfda_rank"] and "logme" not in header

    from rdet.report.transferability import section, selection_records

    recs = selection_records(out)  # the report section over this selection: hscore and sfda now
    assert sorted({(r["estimator"], r["protocol"]) for r in recs}) == sorted(
        (e, f"selection {p}") for e in ("linear", "hscore", "sfda") for p in ("val", "test"))
    sfda_val = next(r for r in recs if r["estimator"] == "sfda" and r["protocol"] == "selection val")
    assert f"| digits | selection val | sfda | {sfda_val['tau']:.3f} | {sfda_val['weighted_tau']:.3f} |" in section(recs)


def test_select_config_is_checked_before_any_work(tmp_path, capsys):
    """rdet select builds its config as the other commands do (build_config + the schema check)."""
    out = tmp_path / "never"
    for opts, match in ((["SELECT.VIEWS", "0"], "SELECT.VIEWS must be >= 1, not 0"),
                        (["SELECT.CACHE_DTYPE", "int8"], "SELECT.CACHE_DTYPE must be one of float16, float32"),
                        (["SELECT.ESTIMATORS", "['logme', 'nope']"], "SELECT.ESTIMATORS items must be one of logme")):
        assert select_main(["--dataset", "digits", "--models", "resnet18_l2_eps3", "--output-dir", str(out), *opts]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and match in err[0], err
        assert not out.exists()
    assert select_main(["--estimator", "logmee", "--output-dir", str(out)]) == 2
    assert "invalid choice: 'logmee'" in capsys.readouterr().err


def test_estimator_names_are_the_schema_choices():
    from rdet.cli import choices
    from rdet.select.estimators import ESTIMATOR_NAMES, ESTIMATOR_REGISTRY

    assert choices("SELECT.ESTIMATORS") == ESTIMATOR_NAMES
    assert sorted(n for n, _ in ESTIMATOR_REGISTRY) == sorted(n for n in ESTIMATOR_NAMES if n != "linear")


# --- --against-paper ------------------------------------------------------------------------------
def _dtd_folder(root: Path, per_split=(("train", 8), ("val", 4), ("test", 4))) -> Path:
    """A small DTD in its release layout (dtd/dtd/{images,labels}, split 1), two textures whose
    images differ in brightness, so features can tell them apart."""
    rng = np.random.default_rng(0)
    d = root / "dtd" / "dtd"
    for split, n in per_split:
        lines = []
        for k, c in enumerate(("banded", "blotchy")):
            for i in range(n):
                name = f"{c}_{split}_{i:04d}.jpg"
                (d / "images" / c).mkdir(parents=True, exist_ok=True)
                Image.fromarray((rng.random((20, 20, 3)) * 90 + 120 * k).astype(np.uint8)).save(d / "images" / c / name)
                lines.append(f"{c}/{name}")
        (d / "labels").mkdir(parents=True, exist_ok=True)
        (d / "labels" / f"{split}1.txt").write_text("\n".join(lines) + "\n")
    return root


@pytest.mark.timeout(500)
def test_against_paper_sets_every_ranking_beside_table8(tmp_path, monkeypatch, capsys):
    """Catalog models in the release layout (random weights, a file:// mirror) on a DTD-layout
    folder: the rankings against Table 8's DTD accuracies of the same models; the Linf model and
    a file of unknown eps are named as missing from the table, not dropped."""
    import json

    from scipy.stats import kendalltau, weightedtau

    from rdet.paper import read_table

    mirror = tmp_path / "mirror"
    mirror.mkdir()
    names = ("resnet18_l2_eps0", "resnet18_l2_eps1", "resnet18_l2_eps3", "resnet18_linf_eps4")
    for i, name in enumerate(names):
        path = mirror / CATALOG[name].file_name
        save_robustness_checkpoint(_resnet18_weights(i), "resnet18", path)
        sha = hashlib.sha256(path.read_bytes()).hexdigest()
        monkeypatch.setitem(CATALOG, name, dataclasses.replace(CATALOG[name], sha256=sha))
    monkeypatch.setenv("RDET_WEIGHTS_URL", mirror.as_uri())
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    mine = _resnet18_file(tmp_path / "mine.pth", seed=9)
    root = _dtd_folder(tmp_path / "data")
    out = tmp_path / "sel"
    argv = ["--dataset", "dtd", "--data-root", str(root), "--models", *names, str(mine), "--output-dir", str(out),
            "--against-paper", "fixed", "--estimator", "logme", "knn", *SMALL, "DATA.VAL_SIZE", "0.25",
            "SELECT.KNN_K", "3", "DATA.NUM_WORKERS", "2"]
    assert select_main(argv) == 0
    printed = capsys.readouterr().out
    result = json.loads((out / "against_paper.json").read_text())
    table8 = {(r["arch"], r["eps"]): float(r["accuracy"]) for r in read_table("table8")
              if r["dataset"] == "DTD" and r["norm"] == "l2"}
    assert result["matched"] == {"resnet18_l2_eps0": table8[("ResNet-18", "0")],
                                 "resnet18_l2_eps1": table8[("ResNet-18", "1")],
                                 "resnet18_l2_eps3": table8[("ResNet-18", "3")]}
    assert {m["model"]: m["why"] for m in result["missing"]} == {
        "resnet18_linf_eps4": "norm linf is not in the table (L2 models only)",
        "mine": "its eps is unknown (not a catalog model, and the file does not say)"}
    assert "Matched 3 of the paper's 10 ResNet-18 models for DTD (3 of the 5 models given)" in printed
    assert "- not in the paper's table: resnet18_linf_eps4: norm linf is not in the table" in printed
    assert not np.isnan(result["stats"]["logme"]["tau"])  # LogME's scores differ: a real tau to check
    rows = {r["model"]: r for r in csv_rows(out / "ranking.csv")}
    matched = sorted(result["matched"])
    truth = [result["matched"][m] for m in matched]
    for name, column in (("linear", "val"), ("logme", "logme"), ("knn", "knn")):
        scores = [float(rows[m][column]) for m in matched]
        s = result["stats"][name]
        assert s["n"] == 3
        assert s["tau"] == pytest.approx(kendalltau(scores, truth).statistic, abs=1e-6) or np.isnan(s["tau"])
        assert s["weighted_tau"] == pytest.approx(weightedtau(scores, truth).statistic, abs=1e-6) or np.isnan(s["tau"])
        first = [m for m, sc in zip(matched, scores) if sc == max(scores)]
        assert s["regret"] == pytest.approx(max(truth) - min(result["matched"][m] for m in first), abs=0.02)
    assert (out / "against_paper.md").read_text().startswith("# Rankings against the paper (Table 8 (fixed-feature))")


def csv_rows(path: Path):
    import csv

    with open(path) as f:
        return list(csv.DictReader(f))


def test_against_paper_refuses_what_the_paper_lacks_before_any_work(tmp_path, capsys):
    out = tmp_path / "never"
    for extra, match in ((["--dataset", "digits"], "digits is not one of the paper's datasets in Table 9 (full-network)"),
                         (["--dataset", "dtd", "DATA.DOWNSCALE", "64"], "not at DATA.DOWNSCALE 64"),
                         (["--dataset", "dtd", "DATA.CLASSES", "[0, 1]"], "DATA.CLASSES selects a subset of DTD")):
        argv = ["--models", "resnet18_l2_eps3", "--output-dir", str(out), "--against-paper", "full", *extra]
        assert select_main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and match in err[0], err
        assert not out.exists()


def test_agreement_statistics():
    from rdet.select.agreement import agreement, top1_regret, weighted_tau

    truth = [90.0, 80.0, 70.0, 60.0, 50.0]
    same = agreement([5, 4, 3, 2, 1], truth)
    assert same == pytest.approx({"tau": 1.0, "weighted_tau": 1.0, "regret": 0.0, "n": 5})
    rev = agreement([1, 2, 3, 4, 5], truth)
    assert rev["tau"] == pytest.approx(-1) and rev["regret"] == 40.0
    # one swap at the top costs more weighted tau than the same swap at the bottom (hyperbolic weights)
    assert weighted_tau([4, 5, 3, 2, 1], truth) < weighted_tau([5, 4, 3, 1, 2], truth) < 1
    assert top1_regret([1, 1, 0, 0, 0], truth) == 10.0  # a tie for first: the worse of the tied models
    assert top1_regret([1.0, 1.0, 1.0, 1.0, 1.0], truth) == 40.0  # a constant estimator gains nothing
    dropped = agreement([None, 4, 3, float("nan"), 1], truth)
    assert dropped["n"] == 3 and dropped["tau"] == pytest.approx(1.0)
    assert agreement([float("-inf"), 4, 3, 2, 1], truth)["regret"] == 10.0  # -inf is a score: the worst


def test_transferability_report_section_names_the_goal():
    from rdet.report.transferability import section

    recs = [{"dataset": "DTD", "protocol": "paper", "estimator": "logme", "tau": 0.6, "weighted_tau": 0.7, "regret": 0.5,
             "n": 10, "seconds": 2.0, "cost_ratio": 120.0},
            {"dataset": "DTD", "protocol": "paper", "estimator": "knn", "tau": 0.8, "weighted_tau": 0.9, "regret": 3.0,
             "n": 10, "seconds": 1.0, "cost_ratio": 240.0},
            {"dataset": "DTD", "protocol": "paper", "estimator": "sfda", "tau": 0.2, "weighted_tau": 0.1, "regret": 0.0,
             "n": 10, "seconds": 9.0, "cost_ratio": 20.0}]
    md = section(recs)
    assert "| DTD | paper | knn | 0.800 | 0.900 | 3.00 | 10 | 1.00 | 240 |" in md
    assert md.strip().endswith("- DTD, paper: highest weighted tau knn (0.900); within 1 point of the best at >= 50x "
                               "less compute: logme")  # knn regrets 3 points, sfda is only 20x cheaper
    assert section([]) == ""


def test_scoring_a_record_from_its_cache_entry(tmp_path):
    """score_record reads the features the record's cache entry holds (training then validation
    part); a model an estimator cannot score (NaN features from an fp16 overflow) gets no score
    and a note, not an aborted ranking; a checkpoint without a head fitting the features gets no
    LEEP/NCE."""
    import numpy as np

    from rdet.select import estimators as est
    from rdet.select.scoring import score_record

    gen = torch.Generator().manual_seed(0)
    y = torch.arange(60) % 3
    x = torch.randn(3, 512, generator=gen)[y] + torch.randn(60, 512, generator=gen)
    model = _resnet18_file(tmp_path / "m.pth", seed=0)
    cfg = _cfg("SELECT.KNN_K", "4")

    def record(feats, name):
        path = tmp_path / f"{name}.pt"
        torch.save({"train_center": feats[:45], "val": feats[45:], "train_labels": y[:45], "val_labels": y[45:]}, path)
        return {"name": name, "cache": {"path": str(path)}, "val_value": 55.0, "head_time_s": 2.0,
                "backbone": {"arch": "resnet18", "source": str(model)}}

    got = score_record(record(x, "good"), ["linear", "logme", "knn", "nce"], cfg)
    assert got["linear"] == {"score": 55.0, "time_s": 2.0, "note": "validation-split heads"}
    assert got["logme"]["score"] == pytest.approx(est.logme(x.numpy(), y.numpy()), rel=1e-9)
    assert got["knn"]["score"] == pytest.approx(est.knn(x.numpy(), y.numpy(), k=4), rel=1e-9)
    fc = torch.load(model)
    probs = (x.double() @ fc["fc.weight"].double().T + fc["fc.bias"].double()).softmax(1).numpy()
    assert got["nce"]["score"] == pytest.approx(est.nce(x.numpy(), y.numpy(), source_probs=probs), rel=1e-9)

    bad = x.clone()
    bad[7, 3] = float("nan")
    got = score_record(record(bad, "bad"), ["logme", "knn"], cfg)
    assert got["logme"]["score"] is None and "NaN or infinite values (1 of 60 samples)" in got["logme"]["note"]

    narrow = score_record(record(x[:, :256].contiguous(), "narrow"), ["leep", "nce"], cfg)  # the head reads 512 dims
    assert narrow["leep"] == narrow["nce"] == {"score": None, "time_s": 0.0, "note": "checkpoint has no source head"}
    rec = record(x, "other")
    rec["backbone"]["source"] = str(_resnet18_file(tmp_path / "m2.pth", seed=1))
    sd = torch.load(rec["backbone"]["source"])
    sd["fc.weight"], sd["fc.bias"] = torch.zeros(5, 512), torch.zeros(5)
    torch.save(sd, rec["backbone"]["source"])
    uniform = score_record(rec, ["leep"], cfg)["leep"]["score"]  # a zero head: uniform source probabilities
    assert uniform == pytest.approx(est.leep(x.numpy(), y.numpy(), source_probs=np.full((60, 5), 0.2)), rel=1e-9)
    assert est.logme(np.zeros((20, 8)), np.arange(20) % 2) == float("-inf")  # dead features: the lowest score


@pytest.mark.parametrize("downscale, table, acc0, acc3", [(0, "table9", 97.20, 98.15), (32, "table11", 97.30, 98.27)])
def test_against_paper_full_network_tables(downscale, table, acc0, acc3):
    """--against-paper full: Table 9, or Table 11 at DATA.DOWNSCALE 32, looked up by (dataset, arch,
    norm, eps); a standard model matches eps 0 whatever norm it is filed under; an architecture
    the paper did not train is named."""
    from rdet.select.against_paper import against_paper

    cfg = merge_config(get_select_cfg(), None, ["DATA.DATASET", "cifar10", "DATA.DOWNSCALE", str(downscale)])

    def row(model, arch, norm, eps, val, logme):
        rec = {"backbone": {"arch": arch, "norm": norm, "eps": eps}}
        return {"model": model, "record": rec, "val": val, "estimators": {"logme": {"score": logme}}}

    rows = [row("r50_eps3", "resnet50", "l2", 3.0, 90.0, 0.1), row("r50_std", "resnet50", "linf", 0.0, 95.0, 0.3),
            row("vgg", "vgg16_bn", "l2", 3.0, 80.0, 0.2)]
    res = against_paper(rows, cfg, "full")
    assert res["table"] == table and res["matched"] == {"r50_eps3": acc3, "r50_std": acc0}
    assert res["missing"] == [{"model": "vgg", "why": "architecture vgg16_bn is not in the table"}]
    assert res["table_models"] == 10 and res["table_archs"] == ["ResNet-50"] and res["best_model"] == "r50_eps3"
    # linear ranks r50_std first (val 95 > 90): it loses acc3 - acc0 points; logme likewise (0.3 > 0.1)
    for name in ("linear", "logme"):
        assert res["stats"][name]["regret"] == pytest.approx(acc3 - acc0) and res["stats"][name]["n"] == 2
        assert res["stats"][name]["tau"] == pytest.approx(-1.0)
