"""The paper's COCO protocol: top three robust backbones by 1x box AP, plus the standard one."""
from rdet.detection.recipe import select_for_3x


def _rec(eps, ap):
    return {"task": "detection", "box_AP": ap, "backbone": {"arch": "resnet50", "eps": eps, "source": f"e{eps}"}}


def test_top_three_robust_plus_standard():
    recs = [_rec(0, 38.0), _rec(0.01, 38.5), _rec(0.1, 39.2), _rec(0.5, 38.9), _rec(1, 39.0), _rec(3, 37.1),
            {"task": "detection", "box_AP": None, "backbone": {"eps": 5}}]
    chosen = [b["eps"] for b in select_for_3x(recs)]
    assert chosen == [0.1, 1, 0.5, 0]


def test_standard_included_even_if_best():
    assert [b["eps"] for b in select_for_3x([_rec(0, 45.0), _rec(1, 40.0)])] == [1, 0]


def test_schedule_named_only_when_its_length_ran():
    from rdet.detection.recipe import schedule_name

    assert schedule_name("1x", 90000, 16) == "1x" and schedule_name("3x", 270000, 16) == "3x"
    assert schedule_name("1x", 180000, 8) == "1x"  # the same number of images at half the batch
    assert schedule_name("1x", 90000, 8) == "90000 iters"
    assert schedule_name("3x", 90000, 16) == "90000 iters"
    assert schedule_name("demo-300", 300, 4) == "demo-300" and schedule_name("demo-300", 4, 1) == "4 iters"
    assert schedule_name("voc-18k", 18000, 16) == "voc-18k" and schedule_name("voc-18k", 9000, 16) == "9000 iters"
    assert schedule_name("", 50, 2) == "50 iters" and schedule_name("long", 50, 2) == "50 iters"
