"""The report on hand-made records: best over eps and lr after averaging seeds, the paper's
numbers beside ours (all twelve shipped tables in use), plots that load back as images; unknown
eps listed apart, never as eps 0; unreadable records skipped and named; no readable record: one
line, nothing written."""
import subprocess
import sys

import pytest
from PIL import Image

from rdet.core.records import write_record
from rdet.report import build_report
from rdet.report.tables import classification_rows, detection_rows


def _cls(dataset, mode, eps, lr, seed, value, arch="resnet50"):
    return {"task": "classification", "dataset": dataset, "mode": mode, "lr": lr, "seed": seed, "value": value,
            "metric": "top1", "backbone": {"arch": arch, "norm": "l2", "eps": eps}}


RECORDS = [
    # eps 0: lr 0.01 seeds (80, 82) -> 81; lr 0.001 seeds (83, 77) -> 80  => standard 81 [80, 82]
    _cls("cifar10", "fixed", 0, 0.01, 0, 80), _cls("cifar10", "fixed", 0, 0.01, 1, 82),
    _cls("cifar10", "fixed", 0, 0.001, 0, 83), _cls("cifar10", "fixed", 0, 0.001, 1, 77),
    # eps 1: 90, 86 -> 88; eps 3: 95 and 79 -> 87 (single seed higher, but mean lower) => robust 88 at eps 1
    _cls("cifar10", "fixed", 1, 0.01, 0, 90), _cls("cifar10", "fixed", 1, 0.01, 1, 86),
    _cls("cifar10", "fixed", 3, 0.01, 0, 95), _cls("cifar10", "fixed", 3, 0.01, 1, 79),
    {"task": "detection", "dataset": "coco_2017_val", "detection_task": "detection", "schedule": "3x",
     "box_AP": 39.0, "backbone": {"arch": "resnet50", "eps": 0.0}},
    {"task": "detection", "dataset": "coco_2017_val", "detection_task": "detection", "schedule": "3x",
     "box_AP": 40.5, "backbone": {"arch": "resnet50", "eps": 0.1}},
    {"task": "detection", "dataset": "coco_2017_val", "detection_task": "detection", "schedule": "3x",
     "box_AP": 40.0, "backbone": {"arch": "resnet50", "eps": 3.0}},
]


def test_best_over_eps_and_lr_averages_seeds_first():
    (row,) = classification_rows(RECORDS[:8])
    s, r = row["standard"], row["robust"]
    assert (s.mean, s.lo, s.hi, s.lr, s.n) == (81, 80, 82, 0.01, 2)
    assert (r.mean, r.lo, r.hi, r.eps) == (88, 86, 90, 1)
    # the paper's Table 8, CIFAR-10 / ResNet-50 / fixed: eps 0 and its best eps > 0
    assert row["paper_standard"] == pytest.approx(79.61) and row["paper_robust"] == pytest.approx(94.77)
    assert row["paper_eps"] == "3"


def test_table1_against_the_papers_table1():
    from rdet.report.tables import table1_rows

    rows = classification_rows(RECORDS[:8] + [_cls("cifar10", "fixed", 0, 0.01, 0, 84, arch="resnet18")])
    (t1,) = table1_rows(rows)
    assert (t1["standard"], t1["robust"]) == (84, 88)  # best over architectures
    assert (t1["paper_standard"], t1["paper_robust"]) == (81.31, 95.53)


def test_detection_rows_pick_best_robust_and_paper():
    (row,) = detection_rows(RECORDS[8:])
    assert (row["standard"], row["robust"], row["robust_eps"]) == (39.0, 40.5, 0.1)
    assert (row["paper_standard"], row["paper_robust"]) == (39.61, 40.13)


def test_report_files(tmp_path):
    for i, rec in enumerate(RECORDS):
        write_record((tmp_path / f"run{i}").mkdir() or tmp_path / f"run{i}", rec)
    rep = build_report(tmp_path)
    md = (tmp_path / "report" / "report.md").read_text()
    assert "81.00 [80.00, 82.00] (n=2)" in md and "+1.39" in md  # 81 - 79.61
    assert (tmp_path / "report" / "classification.csv").read_text().count("\n") == 2
    assert len(rep["plots"]) == 2
    for p in rep["plots"]:
        with Image.open(p) as im:
            assert im.size[0] > 100 and im.size[1] > 100


def _pre(arch, norm, eps, value, dataset="imagenet"):
    return {"task": "pretrain", "dataset": dataset, "value": value,
            "backbone": {"arch": arch, "norm": norm, "eps": eps}}


def test_paper_tables_for_linf_32px_other_archs_and_imagenet():
    linf = [dict(_cls("cifar10", "fixed", 0, 0.01, 0, 70), backbone={"arch": "resnet50", "norm": "l2", "eps": 0}),
            dict(_cls("cifar10", "fixed", 4 / 255, 0.01, 0, 85), backbone={"arch": "resnet50", "norm": "linf",
                                                                           "eps": 4 / 255})]
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
                          _pre("densenet161", "l2", 3.0, 62.0), _pre("resnet18", "l2", 1.0, 90.0, "fashion_mnist")])
    assert {(r["arch"], r["eps_text"]): r["paper_clean"] for r in rows} == {
        ("densenet161", "3"): 66.98, ("resnet18", "1"): None, ("resnet50", "3"): 62.83, ("resnet50", "4/255"): 63.86}


def test_unknown_eps_is_listed_apart_never_as_standard(tmp_path):
    unknown = {"task": "classification", "dataset": "cifar10", "mode": "fixed", "lr": 0.01, "seed": 0, "value": 99.0,
               "metric": "top1", "backbone": {"arch": "resnet50", "norm": None, "eps": None, "source": "mystery.pt"}}
    det_unknown = dict(RECORDS[8], box_AP=45.0, backbone={"arch": "resnet50", "eps": None, "source": "m.pkl"})
    (row,) = classification_rows(RECORDS[:8] + [unknown])
    assert row["standard"].mean == 81  # the 99.0 of an unknown eps is not the eps-0 result
    (drow,) = detection_rows(RECORDS[8:] + [det_unknown])
    assert drow["standard"] == 39.0
    for i, rec in enumerate(RECORDS + [unknown, det_unknown]):
        write_record((tmp_path / f"run{i}").mkdir() or tmp_path / f"run{i}", rec)
    md = build_report(tmp_path)["markdown"]
    section = md.split("## Results from source models of unknown eps")[1]
    assert "| classification | cifar10 | fixed | resnet50 | mystery.pt | top1 | 99.00 |" in section
    assert "| detection | coco_2017_val | 3x | resnet50 | m.pkl | box_AP | 45.00 |" in section


def test_unreadable_records_are_skipped_and_named(tmp_path):
    for i, rec in enumerate(RECORDS[:8]):
        write_record((tmp_path / f"run{i}").mkdir() or tmp_path / f"run{i}", rec)
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "result.json").write_text("{not json")
    (tmp_path / "odd").mkdir()
    (tmp_path / "odd" / "result.json").write_text("[1, 2]")
    proc = subprocess.run([sys.executable, "-m", "rdet", "report", str(tmp_path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    warnings = proc.stderr.strip().splitlines()
    assert len(warnings) == 2 and all(w.startswith("warning: skipped ") for w in warnings)
    for name in ("broken", "odd"):
        assert str(tmp_path / name / "result.json") in proc.stderr
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


def test_every_shipped_paper_table_is_read():
    """No CSV ships unread: each is a FILES entry (the behaviour tests above read them)."""
    from pathlib import Path

    import rdet.paper
    from rdet.paper import FILES, read_table

    shipped = {p.name for p in Path(rdet.paper.__file__).parent.glob("*.csv")}
    assert shipped == set(FILES.values()) and len(shipped) == 12
    assert all(read_table(key) for key in FILES)
