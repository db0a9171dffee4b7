"""The ``transferability`` study kind: estimators per target x backbone as study cells, judged in the
report against the study's own fine-tuning (fixed / full) and the selection's validation split."""
import pytest
import torch

from rdet.backbones import get_spec

DATA = ["DATA.TRAIN_SIZE", "16", "DATA.TEST_RESIZE", "16", "DATA.CROP_SCALE_MIN", "0.7", "DATA.NUM_WORKERS", "2",
        "DATA.MAX_TRAIN", "250", "DATA.MAX_TEST", "100", "SOLVER.EPOCHS", "2", "SOLVER.LR_STEP_EPOCHS", "1"]


def _rec(name, src, val, test, scores, secs=1.0, extract=2.0):
    return {"task": "transferability", "target": "digits16", "name": name, "dataset": "digits", "classes": [],
            "downscale": 0, "val_value": val, "test_value": test, "extract_time_s": extract,
            "backbone": {"arch": "resnet18", "norm": "l2", "eps": 0.0, "source": src},
            "estimators": {n: {"score": s, "time_s": secs, "note": ""} for n, s in scores.items()}}


def _cls(src, mode, lr, seed, value, wall=10.0, dataset="digits"):
    return {"task": "classification", "dataset": dataset, "classes": [], "downscale": 0, "mode": mode, "lr": lr,
            "seed": seed, "value": value, "wall_time_s": wall, "backbone": {"source": src}}


def test_ground_truth_is_best_lr_of_the_seed_mean_and_cost_is_every_cell():
    """Fine-tuned truth per backbone = max over lr of the mean over seeds; cost ratio = every
    classification cell's seconds / (extraction + scoring over every backbone); other data is ignored."""
    from scipy.stats import kendalltau

    from rdet.report.transferability import section, study_records

    recs = [_rec("a", "a.pth", 50, 51, {"linear": 50, "logme": 0.3}), _rec("b", "b.pth", 60, 59, {"linear": 60, "logme": 0.1}),
            _rec("c", "c.pth", 55, 56, {"linear": 55, "logme": 0.2})]
    # a: lr 0.1 mean (70+74)/2 = 72 beats lr 0.01's 71; b: 65; c: 80 (one lr)
    recs += [_cls("a.pth", "fixed", 0.1, 0, 70), _cls("a.pth", "fixed", 0.1, 1, 74), _cls("a.pth", "fixed", 0.01, 0, 71),
             _cls("a.pth", "fixed", 0.01, 1, 71), _cls("b.pth", "fixed", 0.1, 0, 65), _cls("b.pth", "fixed", 0.1, 1, 65),
             _cls("c.pth", "fixed", 0.1, 0, 79), _cls("c.pth", "fixed", 0.1, 1, 81),
             _cls("a.pth", "fixed", 0.1, 0, 1.0, dataset="fashion_mnist"),  # another target: not a ground truth
             _cls("a.pth", "full", 0.1, 0, 90, wall=100), _cls("b.pth", "full", 0.1, 0, 95, wall=100)]
    out = {(r["protocol"], r["estimator"]): r for r in study_records(recs)}
    fixed = out[("fine-tuned fixed (2 seeds)", "logme")]
    truth = [72, 65, 80]
    assert fixed["tau"] == pytest.approx(kendalltau([0.3, 0.1, 0.2], truth)[0]) and fixed["n"] == 3
    assert fixed["regret"] == pytest.approx(80 - 72)  # logme's first choice a: 72 vs the best c: 80
    assert fixed["seconds"] == pytest.approx(3 * (1 + 2)) and fixed["cost_ratio"] == pytest.approx(80 / 9)
    full = out[("fine-tuned full (1 seed)", "logme")]
    assert full["n"] == 2 and full["regret"] == pytest.approx(95 - 90) and full["cost_ratio"] == pytest.approx(200 / 9)
    assert out[("selection val", "linear")]["tau"] == pytest.approx(1.0) and out[("selection val", "linear")]["cost_ratio"] is None
    md = section(list(out.values()))
    assert "| digits16 | fine-tuned fixed (2 seeds) | logme |" in md
    # fixed-feature runs of another protocol on the same data: their own ground truth, never pooled
    other = [dict(_cls(src, "fixed", 0.1, 0, v), protocol="per-epoch", epochs=30) for src, v in
             (("a.pth", 10), ("b.pth", 30), ("c.pth", 20))]
    out = {(r["protocol"], r["estimator"]): r for r in study_records(recs + other)}
    assert sorted(p for p, e in out if e == "logme" and p.startswith("fine-tuned fixed")) == [
        "fine-tuned fixed (None, None epochs, None; 2 seeds)", "fine-tuned fixed (per-epoch, 30 epochs, None; 1 seed)"]
    assert out[("fine-tuned fixed (None, None epochs, None; 2 seeds)", "logme")]["regret"] == pytest.approx(8)
    assert out[("fine-tuned fixed (per-epoch, 30 epochs, None; 1 seed)", "logme")]["regret"] == pytest.approx(20)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_study_scores_estimators_per_target_and_reports_them_beside_its_fine_tuning(tmp_path):
    """Three backbone files -> fixed-feature transfer cells and transferability cells on digits, run
    by the study runner (loader workers on); the estimator cells' scores equal the estimators run
    on their cached features, and the report puts the ranking and the agreement with the study's
    own fine-tuning side by side. A mistyped estimator fails at load, before any cell."""
    import json

    from rdet.core.errors import ConfigError
    from rdet.core.records import iter_records
    from rdet.report import build_report
    from rdet.select import estimators as est
    from rdet.select.scoring import cached_features
    from rdet.study import load_study, run_study

    for i in range(3):
        torch.manual_seed(i)
        torch.save({"model": get_spec("resnet18").builder(10).state_dict(),
                    "rdet": {"arch": "resnet18", "norm": "l2", "eps": float(i), "method": "pgd" if i else "standard"}},
                   tmp_path / f"m{i}.pth")
    opts = ", ".join(f'"{o}"' for o in DATA)
    text = f"""
output_dir: {tmp_path / 'out'}
backbones: [{', '.join(f'{{name: m{i}, weights: {tmp_path / f"m{i}.pth"}}}' for i in range(3))}]
classification:
  config: configs/classify_demo.yaml
  datasets: [{{name: digits16, dataset: digits, opts: [DATA.CLASSES, "[]", {opts}]}}]
  modes: [fixed]
  lrs: [0.1]
transferability:
  estimators: [logme, knn]
  datasets: [{{name: digits16, dataset: digits}}]
  opts: [{opts}, SELECT.VIEWS, 1, SELECT.LOGREG_L2, "[0.001]", SELECT.LOGREG_MAX_ITER, 30, TRANSFER.LR_GRID, "[0.1]",
         SELECT.KNN_K, 5]
"""
    bad = tmp_path / "bad.yaml"
    bad.write_text(text.replace("[logme, knn]", "[logme, knnn]"))
    with pytest.raises(ConfigError, match=r"estimate/digits16/m0.*knnn"):
        load_study(bad)
    assert not (tmp_path / "out").exists()

    path = tmp_path / "study.yaml"
    path.write_text(text)
    run_study(path, console=False)
    recs = sorted((r for r in iter_records(tmp_path / "out" / "estimate")), key=lambda r: r["name"])
    assert [r["name"] for r in recs] == ["m0", "m1", "m2"] and all(r["task"] == "transferability" for r in recs)
    for r in recs:
        f, y = cached_features(r)
        assert r["estimators"]["logme"]["score"] == pytest.approx(est.logme(f, y), rel=1e-9)
        assert r["estimators"]["knn"]["score"] == pytest.approx(est.knn(f, y, k=5), rel=1e-9)
        assert r["estimators"]["linear"]["score"] == r["val_value"]
    report = build_report(tmp_path / "out")
    md = (tmp_path / "out" / "report" / "report.md").read_text()
    assert "## Backbone ranking for digits16 with transferability estimators" in md
    assert "| digits16 | fine-tuned fixed (1 seed) | logme |" in md and "| digits16 | selection val | knn |" in md
    assert "- digits16, fine-tuned fixed (1 seed): highest weighted tau" in md
    assert report is not None and json.dumps(report, default=str)
