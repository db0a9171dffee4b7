"""The report on hand-made records (the fields rdet's tasks write): best over eps and lr after
averaging seeds, the paper's numbers beside ours; rows that never pool different experiments
(protocol, evaluation split, backbone method, family), each naming its experiment, and a paper
number beside another protocol only with its label; differences with their seed spread; detection
APs below the noise floor as wiring checks; the paper's Table 4 read by its corrected columns with
eps tolerance; PGD and AutoAttack rows apart, RobustBench's numbers beside its models; plots with
whiskers and no empty legend entry; unknown eps listed apart; unreadable records skipped."""
import subprocess
import sys

import pytest
from PIL import Image

from rdet.core.records import write_record
import rdet.study  # noqa: F401 - registers the task kinds and their report sections
from rdet.report import build_report
from rdet.report.stats import diff_text
from rdet.report.tables import classification_rows, detection_rows

# what rdet.tasks.transfer writes for a run of the paper's protocol
PAPER_PROTOCOL = {"protocol": "per-epoch", "epochs": 150, "eval_split": "test", "train_size": 224, "bn": "train",
                  "downscale": 0, "recipe": {"name": "paper_sgd", "optimizer": "sgd"}}


def _cls(dataset, mode, eps, lr, seed, value, arch="resnet50", norm="l2", method=None, **fields):
    method = method or ("standard" if eps == 0 else "pgd")
    return {"task": "classification", "dataset": dataset, "mode": mode, "lr": lr, "seed": seed, "value": value,
            "metric": "top1", "backbone": {"arch": arch, "norm": norm, "eps": eps, "method": method,
                                           "source": f"{arch}_{norm}_eps{eps:g}"},
            **dict(PAPER_PROTOCOL, **fields)}


def _det(ap, eps, seed=0, arch="resnet50", schedule="3x", mask=None, method="pgd", **kw):
    rec = {"task": "detection", "dataset": "coco_2017_val", "detection_task": "detection", "schedule": schedule,
           "meta_architecture": "GeneralizedRCNN/StandardROIHeads", "box_AP": ap, "seed": seed,
           "backbone": {"arch": arch, "norm": "l2", "eps": eps, "source": f"{arch}_{eps}.pkl",
                        "method": method if eps else "standard"}}
    if mask is not None:
        rec.update(detection_task="instance_segmentation", mask_AP=mask)
    return dict(rec, **kw)


RECORDS = [
    # eps 0: lr 0.01 seeds (80, 82) -> 81; lr 0.001 seeds (83, 77) -> 80  => standard 81 [80, 82]
    _cls("cifar10", "fixed", 0, 0.01, 0, 80), _cls("cifar10", "fixed", 0, 0.01, 1, 82),
    _cls("cifar10", "fixed", 0, 0.001, 0, 83), _cls("cifar10", "fixed", 0, 0.001, 1, 77),
    # eps 1: 90, 86 -> 88; eps 3: 95 and 79 -> 87 (single seed higher, but mean lower) => robust 88 at eps 1
    _cls("cifar10", "fixed", 1, 0.01, 0, 90), _cls("cifar10", "fixed", 1, 0.01, 1, 86),
    _cls("cifar10", "fixed", 3, 0.01, 0, 95), _cls("cifar10", "fixed", 3, 0.01, 1, 79),
    _det(39.0, 0.0), _det(40.5, 0.1), _det(40.0, 3.0),
]


def _write_all(tmp_path, records):
    for i, rec in enumerate(records):
        write_record((tmp_path / f"run{i}").mkdir() or tmp_path / f"run{i}", rec)


def test_best_over_eps_and_lr_averages_seeds_first():
    (row,) = classification_rows(RECORDS[:8])
    s, r = row["standard"], row["robust"]
    assert (s.mean, s.lo, s.hi, s.lr, s.n) == (81, 80, 82, 0.01, 2)
    assert (r.mean, r.lo, r.hi, r.eps, r.method) == (88, 86, 90, 1, "pgd")
    # the paper's Table 8, CIFAR-10 / ResNet-50 / fixed: eps 0 and its best eps > 0
    assert row["paper_standard"] == pytest.approx(79.61) and row["paper_robust"] == pytest.approx(94.77)
    assert row["paper_eps"] == "3" and row["paper_protocol"] and row["paper_label"] == ""
    assert row["delta_standard"].value == pytest.approx(81 - 79.61)
    assert row["robust_vs_standard"].value == 7 and row["robust_vs_standard"].verdict == "outside"


def test_table1_against_the_papers_table1():
    from rdet.report.tables import table1_rows

    rows = classification_rows(RECORDS[:8] + [_cls("cifar10", "fixed", 0, 0.01, 0, 84, arch="resnet18")])
    (t1,) = table1_rows(rows)
    assert (t1["standard"].mean, t1["robust"].mean) == (84, 88)  # best over architectures
    assert (t1["paper_standard"], t1["paper_robust"]) == (81.31, 95.53) and t1["paper_label"] == ""


def test_protocol_split_and_method_make_separate_labelled_rows(tmp_path):
    """Records that differ only in protocol, evaluation split or backbone method are never
    averaged as seeds; each row names its experiment, and a paper number sits beside a
    feature-cache or validation row only with that label (and no rdet − paper difference)."""
    base = RECORDS[:8]
    cache = [dict(r, protocol="feature-cache (4 views)", value=r["value"] - 10) for r in base]
    val = [dict(r, eval_split="validation", value=r["value"] + 5) for r in base]
    fgsm = [_cls("cifar10", "fixed", 1, 0.01, s, v, method="fgsm_rs") for s, v in ((0, 60), (1, 62))]
    old = [{k: v for k, v in r.items() if k not in ("protocol", "eval_split")} for r in base[:2]]  # older records
    rows = classification_rows(base + cache + val + fgsm + old)
    by = {(r["experiment"], r["method"]): r for r in rows}
    paper_row = by[("per-epoch, 150 epochs, test split, 224 px, recipe paper_sgd", "pgd")]
    assert paper_row["standard"].mean == 81 and paper_row["robust"].mean == 88 and paper_row["standard"].n == 2
    c = by[("feature-cache (4 views), 150 epochs, test split, 224 px, recipe paper_sgd", "pgd")]
    assert (c["standard"].mean, c["robust"].mean, c["standard"].n) == (71, 78, 2)
    assert c["paper_standard"] == pytest.approx(79.61) and c["paper_label"] == "feature-cache (4 views)"
    assert c["delta_standard"] is None and c["delta_robust"] is None
    v = by[("per-epoch, 150 epochs, validation split, 224 px, recipe paper_sgd", "pgd")]
    assert (v["standard"].mean, v["robust"].mean) == (86, 93) and v["paper_label"] == "validation split"
    f = by[("per-epoch, 150 epochs, test split, 224 px, recipe paper_sgd", "fgsm_rs")]
    assert f["robust"].mean == 61 and f["standard"].mean == 81 and f["paper_label"] == "backbone method fgsm_rs"
    u = by[("protocol unknown, 150 epochs, split unknown, 224 px, recipe paper_sgd", None)]  # old records: unknown, apart
    assert u["standard"].n == 2 and u["robust"] is None and "protocol unknown" in u["paper_label"]
    assert len(rows) == 5

    _write_all(tmp_path, base + cache + val + fgsm)
    md = build_report(tmp_path)["markdown"]
    lines = [ln for ln in md.splitlines() if ln.startswith("| ") and "| cifar10 | fixed |" in ln]
    assert len(lines) == 4 + 4  # Table 1 (one per experiment) and the transfer table
    cache_line = next(ln for ln in lines if "feature-cache (4 views), 150 epochs" in ln and ln.count("|") > 14)
    assert "79.61 (other protocol: feature-cache (4 views))" in cache_line
    val_line = next(ln for ln in lines if "validation split" in ln and ln.count("|") > 14)
    assert "79.61 (other protocol: validation split)" in val_line
    paper_line = next(ln for ln in lines if "per-epoch, 150 epochs, test split, 224 px, recipe paper_sgd" in ln
                      and "(l2, pgd)" in ln)
    assert "| 79.61 |" in paper_line and "**+1.39** (n 2 vs paper" in paper_line  # 81 - 79.61: paper protocol


def test_differences_inside_the_seed_spread_are_marked_not_highlighted():
    from rdet.report.stats import ConfigResult, diff_text, difference

    inside = classification_rows([_cls("cifar10", "fixed", 0, 0.01, s, v) for s, v in ((0, 80), (1, 82))] +
                                 [_cls("cifar10", "fixed", 1, 0.01, s, v) for s, v in ((0, 81), (1, 84))])[0]
    d = inside["robust_vs_standard"]
    assert d.value == pytest.approx(1.5) and d.verdict == "inside" and not d.highlight
    text = diff_text(d)
    assert "**" not in text and "inside the seed spread" in text
    assert "n 2 vs 2" in text and "spread 3.00 vs 2.00" in text
    out = difference(ConfigResult.of([90, 91], eps=1, lr=0.01), ConfigResult.of([80, 82], eps=0, lr=0.01))
    assert out.verdict == "outside" and diff_text(out).startswith("**+9.50**")
    one = difference(ConfigResult.of([90], eps=1, lr=0.01), ConfigResult.of([80], eps=0, lr=0.01))
    assert one.verdict == "one seed" and "**" not in diff_text(one) and "1 seed" in diff_text(one)
    # against a paper number: our spread covers it -> inside
    assert difference(ConfigResult.of([79, 81], eps=0, lr=0.01), 79.61).verdict == "inside"


def test_detection_rows_pick_best_robust_and_paper():
    (row,) = detection_rows(RECORDS[8:])
    assert (row["standard"].mean, row["robust"].mean, row["robust_eps"]) == (39.0, 40.5, 0.1)
    assert (row["paper_standard"], row["paper_robust"]) == (39.61, 40.13)
    assert row["paper_protocol"] and not row["wiring_check"] and row["method"] == "pgd"
    # a detection record without backbone.method: its own row, "unknown", not set beside the paper unlabelled
    rows = detection_rows(RECORDS[8:] + [_det(42.0, 1.0, method=None)])
    (unk,) = [r for r in rows if r["method"] == "unknown"]
    assert unk["robust"].mean == 42.0 and unk["paper_label"] == "backbone method unknown"
    assert next(r for r in rows if r["method"] == "pgd")["robust"].mean == 40.5
    # seeds of one backbone are averaged, never taken as different configurations
    (row,) = detection_rows(RECORDS[8:] + [_det(41.0, 0.0, seed=1)])
    assert (row["standard"].mean, row["standard"].n, row["standard"].lo, row["standard"].hi) == (40.0, 2, 39.0, 41.0)
    assert row["robust_vs_standard"].verdict == "inside"


def test_one_seed_detection_below_one_ap_is_a_wiring_check(tmp_path):
    demo = [_det(0.69, 0.0, arch="resnet18", schedule="demo-120", mask=0.5),
            _det(0.83, 1.0, arch="resnet18", schedule="demo-120", mask=0.6)]
    rows = detection_rows(demo)
    assert len(rows) == 2 and all(r["wiring_check"] and r["robust_vs_standard"] is None for r in rows)
    assert rows[0]["paper_label"] == "arch resnet18; schedule demo-120"
    _write_all(tmp_path, demo)
    md = build_report(tmp_path)["markdown"]
    det = md.split("## Detection")[1].split("\n## ")[0]
    table = [ln for ln in det.splitlines() if ln.startswith("| coco")]
    assert len(table) == 2 and all("wiring check (AP < 1: not a comparison)" in ln for ln in table)
    assert all("**" not in ln and "+0.14" not in ln for ln in table)
    assert all("40.74 (other protocol: arch resnet18; schedule demo-120)" in ln or
               "36.98 (other protocol: arch resnet18; schedule demo-120)" in ln for ln in table)


def test_table4_corrected_columns_and_eps_tolerance():
    from rdet.paper import eps_column, read_table
    from rdet.report.tables import eps_text, paper_imagenet

    assert paper_imagenet("resnet18", "linf", 0.5 / 255) == 66.13  # not 70.01, the printed header's reading
    assert paper_imagenet("resnet18", "linf", 1 / 255) == 63.46
    assert paper_imagenet("resnet18", "linf", 0.01569) == 52.49  # the README's spelling of 4/255
    assert paper_imagenet("resnet50", "linf", 8 / 255) == 54.53
    assert paper_imagenet("resnet18", "linf", 3 / 255) is None  # no 3/255 model; "unlabelled" never matches
    assert paper_imagenet("resnet50", "l2", 3.0) == 62.83 and paper_imagenet("resnet18", "l2", 0.0) == 69.79
    assert "unlabelled" in read_table("table4")[0]
    assert eps_column(["0", "0.5/255", "4/255"], "linf", 0.0157) == "4/255"
    assert eps_column(["0.01", "0.03"], "l2", 0.0101) == "0.01" and eps_column(["0.01", "0.03"], "l2", 0.02) is None
    assert eps_text("linf", 0.01569) == "4/255" and eps_text("linf", 0.5 / 255) == "0.5/255"
    # 0.01569 and 4/255 are one grid point: one configuration over both seeds, on the paper's Table 6 curve
    from rdet.report.plots import eps_figure
    from rdet.report.tables import eps_curves, paper_curves

    recs = [_cls("cifar10", "fixed", 0, 0.01, 0, 70), _cls("cifar10", "fixed", 0, 0.01, 1, 72),
            _cls("cifar10", "fixed", 0.01569, 0.01, 0, 85, norm="linf"),
            _cls("cifar10", "fixed", 4 / 255, 0.01, 1, 87, norm="linf")]
    recs[3]["backbone"]["source"] = recs[2]["backbone"]["source"]  # one model, its eps written two ways
    (row,) = classification_rows(recs)
    assert (row["robust"].n, row["robust"].mean, row["paper_table"]) == (2, 86, "Table 6")
    curves = eps_curves(recs)
    ax = eps_figure("cifar10", curves, paper_curves(curves)).axes[0]
    (paper_line,) = [ln for ln in ax.get_lines() if ln.get_label().startswith("paper")]
    assert list(paper_line.get_ydata()) == [78.16, 93.35]  # Table 6 at eps 0 and 4/255, at rdet's two x


def _legend_texts(fig):
    leg = fig.axes[0].get_legend()
    return [t.get_text() for t in leg.get_texts()] if leg else []


def test_plots_have_whiskers_and_no_legend_entry_without_data():
    from matplotlib.container import BarContainer, ErrorbarContainer

    from rdet.report.plots import detection_figure, eps_figure
    from rdet.report.tables import eps_curves, paper_curves

    demo = detection_rows([_det(0.69, 0.0, arch="resnet18", schedule="demo-120", dataset="fashion_det_val"),
                           _det(0.83, 1.0, arch="resnet18", schedule="demo-120", dataset="fashion_det_val")])
    fig = detection_figure(demo)  # no paper numbers for this dataset: no paper entries
    texts = _legend_texts(fig)
    assert len(texts) == 2 and all(t.startswith("rdet ") for t in texts)
    bars = [c for c in fig.axes[0].containers if isinstance(c, BarContainer)]
    assert len(bars) == len(texts) and all(len(b.patches) > 0 for b in bars)
    assert all(p.get_hatch() == "//" for b in bars for p in b.patches)  # wiring check: hatched
    fig = detection_figure(detection_rows(RECORDS[8:]))  # COCO: paper series have data
    assert len(_legend_texts(fig)) == 4

    curves = eps_curves(RECORDS[:8])
    fig = eps_figure("cifar10", curves, paper_curves(curves))
    texts = _legend_texts(fig)
    assert len(texts) == 2 and sorted(t.split()[0] for t in texts) == ["paper", "rdet"]
    (eb,) = [c for c in fig.axes[0].containers if isinstance(c, ErrorbarContainer)]
    assert eb.has_yerr
    segs = eb.lines[2][0].get_segments()  # one whisker per eps: min-max over seeds
    assert sorted((float(s[0][1]), float(s[1][1])) for s in segs) == [(79, 95), (80, 82), (86, 90)]
    other = eps_curves([dict(r, protocol="feature-cache (2 views)") for r in RECORDS[:8]])
    texts = _legend_texts(eps_figure("cifar10", other, paper_curves(other)))
    assert "other protocol: feature-cache (2 views)" in next(t for t in texts if t.startswith("paper"))


def _rob(source, attacks, clean=60.0, dataset="imagenet", subset="robustbench", n=5000, seed=0, **extra):
    """A robustness record with every field ``rdet evaluate`` writes that the comparison reads, as a
    run measured the way RobustBench measures writes them (``extra`` changes any)."""
    from rdet.data.robustbench import list_sha1

    rec = {"task": "robustness", "dataset": dataset, "subset": subset, "n_images": n, "clean_top1": clean,
           "weights": source, "arch": "resnet50", "seed": seed, "head": {"source": "checkpoint"},
           "backbone": {"arch": "resnet50", "norm": "linf", "eps": 4 / 255, "method": "pgd", "source": source},
           "attacks": [dict(a, n_images=n, seed=seed) for a in attacks], "amp": "off", "image_size": 224,
           "downscale": 0, "images_sha1": list_sha1() if subset == "robustbench" and n == 5000 else "0" * 40,
           "preprocessing": {"resize": 256, "crop": 224, "interpolation": "bilinear", "overrides": [],
                             "source": f"catalog {source} (Res256Crop224)"}}
    rec.update(extra)
    return rec


PGD = {"attack": "pgd", "norm": "linf", "eps": 4 / 255, "steps": 20, "step_size": 0.00196, "restarts": 1}
AA = {"attack": "autoattack", "version": "standard", "norm": "linf", "eps": 4 / 255, "standard_budget": True,
      "n_target_classes": 9}


def test_autoattack_and_pgd_rows_apart_with_robustbench_numbers(tmp_path):
    from rdet.report.robustness import robustness_rows

    recs = [_rob("resnet50_linf_eps4", [dict(PGD, robust_top1=38.5), dict(AA, robust_top1=34.9)], clean=64.1),
            _rob("resnet50_linf_eps4", [dict(PGD, robust_top1=38.1), dict(AA, robust_top1=34.7)], clean=63.9, seed=1),
            _rob("resnet50_linf_eps4", [dict(AA, robust_top1=30.0, standard_budget=False, n_iter=5)],
                 dataset="digits", subset=None, n=200)]
    rows = robustness_rows(recs)
    assert len(rows) == 3
    pgd, aa = [r for r in rows if r["data"] == "imagenet (robustbench subset)"]
    assert pgd["attack"].startswith("PGD-20") and aa["attack"] == "AutoAttack standard"
    assert (pgd["robust"].mean, pgd["robust"].n) == (pytest.approx(38.3), 2)  # seeds averaged, attacks not pooled
    assert aa["robust"].mean == pytest.approx(34.8) and aa["clean"].mean == pytest.approx(64.0)
    assert aa["vs_pgd"].value == pytest.approx(-3.5) and aa["vs_pgd"].verdict == "outside"
    assert (aa["robustbench_id"], aa["robustbench_clean"], aa["robustbench_autoattack"]) == \
        ("Salman2020Do_R50", 64.02, 34.96)
    assert aa["robustbench_label"] == "" and aa["delta_robustbench"].value == pytest.approx(34.8 - 34.96)
    assert pgd["robustbench_label"].startswith("attack PGD-20") and pgd["delta_robustbench"] is None
    (small,) = [r for r in rows if r["data"].startswith("digits")]
    assert "data digits" in small["robustbench_label"] and "reduced budget" in small["robustbench_label"]
    assert aa["delta_robustbench"].verdict != "within noise"  # 0.16 points: 8 of 5000 images, beyond the band

    _write_all(tmp_path, recs)
    md = build_report(tmp_path)["markdown"]
    sec = md.split("## Robust accuracy")[1].split("\n## ")[0]
    lines = [ln for ln in sec.splitlines() if ln.startswith("| resnet")]
    assert len(lines) == 3 and sum("AutoAttack" in ln for ln in lines) == 2
    assert any("64.02 / 34.96 (Salman2020Do_R50) |" in ln and "AutoAttack standard" in ln for ln in lines)
    cat = md.split("## Catalog models")[1].split("\n## ")[0]
    assert "| resnet | resnet50_linf_eps4 | resnet50 | linf | 4/255 | 63.86 (Table 4) | Salman2020Do_R50 | 64.02 | " \
           "34.96 |" in cat
    assert (tmp_path / "report" / "robustness.csv").read_text().count("\n") == 4


def test_robustbench_comparison_checks_every_setting_and_names_noise():
    """Each way of measuring otherwise than RobustBench is named and keeps its own row; a faithful
    row within a few images of RobustBench's number is labelled as run-to-run noise."""
    from rdet.report.robustness import robustness_rows

    def row(attacks=(dict(AA, robust_top1=34.92),), **extra):
        (r,) = robustness_rows([_rob("resnet50_linf_eps4", list(attacks), clean=64.02, **extra)])
        return r

    faithful = row()
    assert faithful["robustbench_label"] == "" and faithful["delta_robustbench"].verdict == "within noise"
    assert "noise band of ±0.10" in diff_text(faithful["delta_robustbench"])
    cases = {
        "images_sha1": ("a" * 40, "not RobustBench's image list"),
        "amp": ("bf16", "clean pass in bf16 (RobustBench: fp32)"),
        "image_size": (160, "image size 160"),
        "preprocessing": ({"resize": 256, "crop": 224, "interpolation": "bicubic", "overrides": []},
                          "preprocessing interpolation bicubic (RobustBench: bilinear)"),
        "attacks": ([dict(AA, eps=4.05 / 255, robust_top1=34.9)], "linf eps 4.05/255"),
    }
    for key, (value, label) in cases.items():
        r = row(**{key: value})
        assert r["robustbench_label"] == label and r["delta_robustbench"] is None, (key, r["robustbench_label"])
    targets = row(attacks=[dict(AA, n_target_classes=4, robust_top1=34.9)])
    assert targets["robustbench_label"] == "attack AutoAttack standard, 4 target classes"
    # a faithful and an unfaithful record of the same model are never pooled
    rows = robustness_rows([_rob("resnet50_linf_eps4", [dict(AA, robust_top1=34.9)]),
                            _rob("resnet50_linf_eps4", [dict(AA, robust_top1=30.0)], amp="bf16", seed=1)])
    assert sorted(r["robust"].n for r in rows) == [1, 1] and len(rows) == 2


def test_catalog_models_of_other_families_show_their_published_numbers():
    from rdet.report.tables import catalog_rows

    name = "Singh2023Revisiting_ConvNeXt-T-ConvStem"  # a RobustBench release in rdet's catalog
    rec = {"task": "classification", "backbone": {"arch": "convnext_tiny_convstem", "source": name}}
    rows = catalog_rows([rec, _cls("cifar10", "fixed", 0, 0.01, 0, 80, arch="resnet18")])
    assert [r["catalog"] for r in rows] == [name, "resnet18_l2_eps0"]  # grouped by family: convnext first
    row, r18 = rows
    assert r18["paper_clean"] == 69.79 and r18["paper_table"] == "Table 3"
    assert (row["family"], row["robustbench_clean"], row["robustbench_autoattack"]) == ("convnext", 72.72, 49.46)
    assert "paper_clean" not in row  # not one of the paper's models


def test_rows_grouped_by_architecture_family_without_torch():
    code = ("import sys; from rdet.report.experiment import arch_family, family_of; "
            "assert [arch_family(a) for a in ('resnet18', 'wide_resnet50_2', 'resnext50_32x4d', "
            "'convnext_tiny', 'swin_tiny_patch4_window7_224', 'vit_base_patch16_224', 'mystery9')] == "
            "['resnet', 'resnet', 'resnet', 'convnext', 'swin', 'vit', 'mystery']; "
            "assert family_of({'backbone': {'arch': 'vit_s_convstem', 'family': 'vit-convstem'}}) == 'vit-convstem'; "
            "assert 'torch' not in sys.modules")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    recs = RECORDS[:2] + [dict(r, backbone=dict(r["backbone"], arch="densenet161")) for r in RECORDS[:2]]
    rows = classification_rows(recs)
    assert [(r["family"], r["arch"]) for r in rows] == [("densenet", "densenet161"), ("resnet", "resnet50")]


def test_report_files(tmp_path):
    _write_all(tmp_path, RECORDS)
    rep = build_report(tmp_path)
    md = (tmp_path / "report" / "report.md").read_text()
    assert "81.00 [80.00, 82.00] (n=2)" in md and "+1.39 (inside the seed spread" not in md
    assert "final epoch" in md
    assert (tmp_path / "report" / "classification.csv").read_text().count("\n") == 2
    assert len(rep["plots"]) == 2
    for p in rep["plots"]:
        with Image.open(p) as im:
            assert im.size[0] > 100 and im.size[1] > 100


def _pre(arch, norm, eps, value, dataset="imagenet", method=None, epochs=90, seed=0, **kw):
    return {**kw, "task": "pretrain", "dataset": dataset, "value": value, "epochs": epochs, "seed": seed,
            "train_size": 224, "recipe": {"name": "paper_sgd"},
            "backbone": {"arch": arch, "norm": norm, "eps": eps, "method": method or ("pgd" if eps else "standard")}}


def test_paper_tables_for_linf_32px_other_archs_and_imagenet():
    linf = [_cls("cifar10", "fixed", 0, 0.01, 0, 70), _cls("cifar10", "fixed", 4 / 255, 0.01, 0, 85, norm="linf")]
    (row,) = classification_rows(linf)
    assert (row["norm"], row["robust"].eps, row["paper_table"]) == ("linf", 4 / 255, "Table 6")
    assert (row["paper_standard"], row["paper_robust"], row["paper_eps"]) == (78.16, 93.68, "8/255")
    small = [dict(r, downscale=32) for r in RECORDS[:8]]
    (row,) = classification_rows(small)
    assert (row["downscale"], row["paper_table"], row["paper_standard"], row["paper_robust"]) == \
        (32, "Table 10", 79.63, 94.81)
    (row,) = classification_rows([_cls("cifar10", "full", 0, 0.01, 0, 90, arch="densenet161"),
                                  _cls("cifar10", "full", 3, 0.01, 0, 91, arch="densenet161")])
    assert (row["paper_table"], row["paper_standard"], row["paper_robust"], row["paper_eps"]) == \
        ("Table 7", 97.84, 98.67, "3")
    # a record whose metric is not the paper's for that dataset is not compared with it
    (row,) = classification_rows([_cls("caltech101", "fixed", 0, 0.01, 0, 80)])  # paper: mean per class
    assert row["paper_standard"] is None and row["paper_table"] is None
    from rdet.report.tables import pretrain_rows

    rows = pretrain_rows([_pre("resnet50", "l2", 3.0, 60.0), _pre("resnet50", "linf", 4 / 255, 61.0),
                          _pre("densenet161", "l2", 3.0, 62.0), _pre("resnet18", "l2", 1.0, 90.0, "fashion_mnist"),
                          _pre("resnet50", "linf", 4 / 255, 55.0, method="fgsm_rs"),
                          _pre("resnet50", "linf", 4 / 255, 57.0, method="fgsm_rs", seed=1)])
    assert {(r["arch"], r["eps_text"], r["method"]): r["paper_clean"] for r in rows} == {
        ("densenet161", "3", "pgd"): 66.98, ("resnet18", "1", "pgd"): None, ("resnet50", "3", "pgd"): 62.83,
        ("resnet50", "4/255", "pgd"): 63.86, ("resnet50", "4/255", "fgsm_rs"): 63.86}
    old = pretrain_rows([{k: v for k, v in _pre("resnet50", "l2", 3.0, 60.0).items() if k != "train_size"}])
    assert old[0]["paper_label"] == "train size unknown" and old[0]["delta_clean"] is None
    stopped = pretrain_rows([_pre("resnet50", "linf", 4 / 255, 30.0, method="fgsm_rs", epochs_run=7),
                             _pre("resnet50", "linf", 4 / 255, 50.0, method="fgsm_rs", seed=1)])
    assert len(stopped) == 2 and any("stopped after 7 epochs" in r["experiment"] for r in stopped)
    fgsm = next(r for r in rows if r["method"] == "fgsm_rs")
    assert fgsm["clean"].n == 2 and fgsm["paper_label"] == "backbone method fgsm_rs" and fgsm["delta_clean"] is None


def test_unknown_eps_is_listed_apart_never_as_standard(tmp_path):
    unknown = dict(_cls("cifar10", "fixed", 0, 0.01, 0, 99.0),
                   backbone={"arch": "resnet50", "norm": None, "eps": None, "source": "mystery.pt"})
    det_unknown = dict(RECORDS[8], box_AP=45.0, backbone={"arch": "resnet50", "eps": None, "source": "m.pkl"})
    (row,) = classification_rows(RECORDS[:8] + [unknown])
    assert row["standard"].mean == 81  # the 99.0 of an unknown eps is not the eps-0 result
    (drow,) = detection_rows(RECORDS[8:] + [det_unknown])
    assert drow["standard"].mean == 39.0
    _write_all(tmp_path, RECORDS + [unknown, det_unknown])
    md = build_report(tmp_path)["markdown"]
    section = md.split("## Results from source models of unknown eps")[1]
    assert "| classification | cifar10 | fixed | resnet50 | mystery.pt | top1 | 99.00 |" in section
    assert "| detection | coco_2017_val | 3x | resnet50 | m.pkl | box_AP | 45.00 |" in section


def test_unreadable_records_are_skipped_and_named(tmp_path, capsys):
    """``rdet report``'s main, in this process (the next test runs ``python -m rdet report``)."""
    from rdet.cli.report import main

    _write_all(tmp_path, RECORDS[:8])
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "result.json").write_text("{not json")
    (tmp_path / "odd").mkdir()
    (tmp_path / "odd" / "result.json").write_text("[1, 2]")
    code = main([str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 0, err
    warnings = err.strip().splitlines()
    assert len(warnings) == 2 and all(w.startswith("warning: skipped ") for w in warnings), err
    for name in ("broken", "odd"):
        assert str(tmp_path / name / "result.json") in err
    md = (tmp_path / "report" / "report.md").read_text()
    assert "8 result records" in md and "Skipped 2 unreadable record(s)" in md and "81.00 [80.00, 82.00]" in md


@pytest.mark.parametrize("content", [None, "{not json"])
def test_no_readable_record_is_one_line_and_writes_nothing(tmp_path, content):
    if content:
        (tmp_path / "a").mkdir()
        (tmp_path / "a" / "result.json").write_text(content)
    before = sorted(tmp_path.rglob("*"))
    proc = subprocess.run([sys.executable, "-m", "rdet", "report", str(tmp_path)], capture_output=True, text=True)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "no readable result.json records" in proc.stderr
    assert sorted(tmp_path.rglob("*")) == before  # no report/ folder


def test_every_shipped_table_is_read():
    """No CSV ships unread: each is a FILES entry (the behaviour tests above read them); Table 4
    and RobustBench's table are the shared reference copies."""
    from pathlib import Path

    import rdet.paper
    from rdet.paper import FILES, read_table

    shipped = {p.name for p in Path(rdet.paper.__file__).parent.glob("*.csv")}
    assert shipped == set(FILES.values()) and len(shipped) == 14
    assert all(read_table(key) for key in FILES)
    assert len(read_table("robustbench_linf")) == 30


def test_bn_sync_is_another_experiment_and_the_doc_says_so():
    """docs/protocol.md no longer lists MODEL.BN among options that leave the protocol alone; a
    full-network run with SyncBatchNorm is its own row, labelled beside the paper's number."""
    from pathlib import Path

    doc = (Path(__file__).parents[1] / "docs" / "protocol.md").read_text()
    unchanged = doc.split("## Runtime options that do not change the protocol")[1].split("\n\n")[1]
    assert "MODEL.BN" not in unchanged and "`MODEL.BN` is **not** among them" in doc
    assert "the report shows the final epoch (`value`) and says so" in doc
    recs = [_cls("cifar10", "full", 0, 0.01, 0, 97.0), _cls("cifar10", "full", 0, 0.01, 1, 97.5, bn="sync")]
    rows = classification_rows(recs)
    assert len(rows) == 2 and {r["experiment"].split(", ")[-2] for r in rows} == {"BN train", "BN sync"}
    sync = next(r for r in rows if "BN sync" in r["experiment"])
    assert sync["paper_label"] == "BN sync" and sync["delta_standard"] is None
    assert sync["paper_standard"] == 97.2  # Table 9, CIFAR-10 ResNet-50 full


@pytest.mark.slow
def test_real_transfer_records_of_other_protocols_get_their_own_labelled_rows(tmp_path):
    """rdet.tasks.transfer's own records: per-epoch, feature-cache and validation-split runs of one
    backbone (a standard ResNet-18 in rdet's checkpoint layout) become three rows, each naming its
    protocol, split and input size."""
    import torch
    from helpers import digits_transfer_cfg

    from rdet.backbones import create_classifier
    from rdet.backbones.checkpoint import classifier_checkpoint
    from rdet.tasks import transfer

    torch.manual_seed(0)
    weights = tmp_path / "backbone.pth"
    meta = {"arch": "resnet18", "norm": None, "eps": 0.0, "method": "standard", "dataset": "digits"}
    torch.save(classifier_checkpoint(create_classifier("resnet18", 10), meta), weights)
    base = ["DATA.MAX_TRAIN", "120", "DATA.MAX_TEST", "60", "DATA.NUM_WORKERS", "2"]
    for name, extra in (("epoch", ["TRANSFER.CACHE_FEATURES", "False"]),
                        ("cache", ["TRANSFER.CACHE_FEATURES", "True", "TRANSFER.CACHE_VIEWS", "2"]),
                        ("val", ["TRANSFER.CACHE_FEATURES", "False", "DATA.VAL_SIZE", "0.2"])):
        transfer.run(digits_transfer_cfg(tmp_path / "runs" / name, "fixed", weights, epochs=1, extra=base + extra))
    md = build_report(tmp_path / "runs")["markdown"]
    table = md.split("## Transfer to classification")[1].split("###")[0]
    rows = [ln for ln in table.splitlines() if ln.startswith("| resnet | digits |")]
    assert len(rows) == 3
    # the helpers' DATA.TEST_RESIZE 16 replaces the weights' own Resize(18) + CenterCrop(16): named too
    over = ", test preprocessing overridden (DATA.TEST_RESIZE 16)"
    for words in ("per-epoch, 1 epoch, test split, 16 px, recipe paper_sgd",
                  "feature-cache (2 views), 1 epoch, test split, 16 px, recipe paper_sgd",
                  "per-epoch, 1 epoch, validation split, 16 px, recipe paper_sgd"):
        assert sum(f"| {words}{over} |" in ln for ln in rows) == 1, (words, rows)


def test_another_optimizer_recipe_is_another_experiment():
    adamw = {"name": "adamw_cosine", "optimizer": "adamw"}
    recs = RECORDS[:2] + [dict(r, recipe=adamw, value=r["value"] + 3) for r in RECORDS[:2]]
    rows = classification_rows(recs)
    assert len(rows) == 2 and sorted(r["standard"].mean for r in rows) == [81, 84]
    other = next(r for r in rows if "recipe adamw_cosine" in r["experiment"])
    assert other["paper_label"] == "recipe adamw_cosine" and other["delta_standard"] is None


def test_classification_with_overridden_test_preprocessing_is_its_own_labelled_row():
    """A run whose DATA.TEST_* replaced the weights' own preprocessing (the record's
    ``preprocessing.overrides``) is another experiment: its own row, named, no paper Δ."""
    over = {"resize": 256, "crop": 224, "interpolation": "bicubic", "overrides": ["DATA.TEST_INTERPOLATION bicubic"]}
    rows = classification_rows(RECORDS[:8] + [_cls("cifar10", "fixed", 0, 0.01, 0, 99, preprocessing=over)])
    (other,) = [r for r in rows if "test preprocessing overridden" in r["experiment"]]
    assert "DATA.TEST_INTERPOLATION bicubic" in other["experiment"] and other["standard"].mean == 99
    assert other["paper_label"] and other["delta_standard"] is None
    (faithful,) = [r for r in rows if r is not other]
    assert faithful["standard"].mean == 81 and faithful["paper_label"] == ""  # never pooled with it
