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
