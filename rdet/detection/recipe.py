"""The paper's COCO protocol (appendix C), as a function the study runner calls.

Compute did not allow the full 3x schedule from every eps, so the paper trained from every eps
on the 1x schedule, then took the three best backbones by box AP, plus the standard (eps = 0)
backbone, to the 3x schedule. VOC (R50-C4) is trained once per backbone.
"""
from __future__ import annotations

import re
from typing import Dict, Iterable, List

TOP_K = 3


def select_for_3x(records_1x: Iterable[Dict], top_k: int = TOP_K) -> List[Dict]:
    """The backbones (``record['backbone']`` dicts) to retrain on 3x: the ``top_k`` robust ones by
    1x box AP and the standard one, best first, standard last if it is not among them."""
    recs = [r for r in records_1x if r.get("box_AP") is not None]
    robust = sorted((r for r in recs if (r["backbone"].get("eps") or 0) > 0), key=lambda r: -r["box_AP"])
    chosen = [r["backbone"] for r in robust[:top_k]]
    chosen += [r["backbone"] for r in recs if not (r["backbone"].get("eps") or 0) > 0][:1]
    return chosen


# detectron2's model-zoo schedule names: 1x = 90k iterations of 16 images (about 12 COCO epochs),
# 3x three times that; at another batch size the same number of images takes 16/batch as many.
SCHEDULE_IMAGES = {"1x": 90_000 * 16, "3x": 270_000 * 16}
_STATED_LENGTH = re.compile(r"-(\d+)(k?)$")  # names that state their iterations: demo-300, voc-18k


def schedule_name(name: str, max_iter: int, ims_per_batch: int) -> str:
    """The schedule a record names: ``name`` (a config's ``RDET.SCHEDULE``) when ``max_iter`` is the
    length it stands for at this batch size, else ``"<max_iter> iters"`` (e.g. a 1x config run
    with ``SOLVER.MAX_ITER 2000``, or a name whose length rdet cannot tell)."""
    if name in SCHEDULE_IMAGES:
        expected = SCHEDULE_IMAGES[name] / ims_per_batch
    elif m := _STATED_LENGTH.search(name or ""):
        expected = int(m[1]) * (1000 if m[2] else 1)
    else:
        expected = None
    return name if expected == max_iter else f"{max_iter} iters"
