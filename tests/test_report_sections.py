"""The report's registered sections reach the report built from a study folder: segmentation's
mIoU table, ``rdet select``'s ranking and the transferability estimators' agreement, each from
what its command writes (a selection run here; segmentation records as its trainer writes them)."""
import torch

from rdet.core.records import write_record
import rdet.study  # noqa: F401 - registers the task kinds and their report sections
from rdet.report import build_report
from rdet.report.sections import ordered_sections

SMALL = ["DATA.TRAIN_SIZE", "16", "DATA.TEST_RESIZE", "16", "DATA.CROP_SCALE_MIN", "0.7", "DATA.NUM_WORKERS", "2",
         "DATA.MAX_TRAIN", "200", "DATA.MAX_TEST", "60", "SOLVER.EPOCHS", "1", "TRANSFER.LR_GRID", "[0.1]",
         "SELECT.VIEWS", "1", "SELECT.LOGREG_L2", "[0.001]", "SELECT.LOGREG_MAX_ITER", "20"]


def _seg(eps, seed, miou):
    return {"task": "segmentation", "dataset": "ade20k_sem_seg_val", "head": "UperNetHead", "crop_size": [512, 512],
            "iterations": 160000, "ims_per_batch": 16, "seed": seed, "mIoU": miou, "fwIoU": 60.0,
            "pixel_accuracy": 75.0, "data_note": "ADE20K (ADEChallengeData2016, 150 classes)",
            "backbone": {"arch": "resnet50", "norm": "l2", "eps": eps, "method": "pgd" if eps else None,
                         "source": f"r50_{eps}.pkl"}}


def test_sections_are_registered_in_order():
    names = [s.name for s in ordered_sections()]
    assert names.index("classification") < names.index("robustness") < names.index("detection") \
        < names.index("segmentation") < names.index("selection") < names.index("transferability")


def test_segmentation_selection_and_estimators_reach_the_report(tmp_path):
    import torchvision

    from rdet.cli.select import main as select_main

    models = []
    for i in range(2):
        torch.manual_seed(i)
        models.append(tmp_path / f"m{i}.pth")
        torch.save(torchvision.models.resnet18().state_dict(), models[-1])
    out = tmp_path / "runs" / "sel"
    assert select_main(["--dataset", "digits", "--models", *map(str, models), "--output-dir", str(out),
                        "--estimator", "logme", "knn", *SMALL]) == 0
    for i, (eps, miou) in enumerate(((0.0, 40.0), (3.0, 43.0))):
        (tmp_path / "runs" / f"seg{i}").mkdir()
        write_record(tmp_path / "runs" / f"seg{i}", _seg(eps, 0, miou))
    md = build_report(tmp_path / "runs")["markdown"]
    seg = md.split("## Semantic segmentation")[1].split("\n## ")[0]
    assert "| resnet50 | 0 (standard) |" in seg and "43.00" in seg
    ranking = md.split("## Backbone ranking (rdet select)")[1].split("\n## ")[0]
    assert "| 1 | m" in ranking and "| 2 | m" in ranking and "validation-selected" in ranking
    est = md.split("## Transferability estimators")[1]
    assert "| logme |" in est and "| knn |" in est
