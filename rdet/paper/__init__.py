"""Published numbers, shipped verbatim as CSV package data and read at run time, so the report can
print them beside rdet's results: the paper's tables (Salman et al. 2020) and RobustBench's
ImageNet Linf leaderboard. See ``rdet.report.tables``.

Column headers that are eps values are labels as the paper prints them (``3``, ``4/255``);
:func:`eps_column` finds the column of an eps given as a number (``0.01569`` is ``4/255``) with a
tolerance, so a decimal spelling of k/255 still finds its column.
"""
from __future__ import annotations

import csv
import functools
import io
import math
from importlib import resources
from typing import Dict, Iterable, List, Optional, Tuple

FILES = {  # every one is read by rdet.report
    "table1": "table1_best.csv",  # best accuracy per dataset: mode x {robust, standard}
    "figure4": "figure4_detection_ap.csv",  # VOC/COCO AP, standard vs best robust
    "table3": "table3_imagenet_clean_l2.csv",  # ImageNet clean top-1 of the L2 ResNets, per eps
    "table3b": "table3b_other_archs_imagenet.csv",  # the same for the six other architectures (eps 0, 3)
    # ImageNet clean top-1 of the Linf ResNets. The paper's printed header (0.5, 1, 3, 2, 4, 8) is
    # garbled; the authors' release table shows the last five columns are 0.5, 1, 2, 4, 8 /255 and
    # the first column's eps is unknown ("unlabelled": never looked up).
    "table4": "table4_imagenet_clean_linf.csv",
    "table5": "table5_datasets.csv",  # the 12 transfer datasets: classes, train/test sizes, metric
    "table6": "table6_linf_transfer_cifar.csv",  # Linf backbones -> CIFAR-10/100, per eps
    "table7": "table7_arch_full_network.csv",  # six other architectures, full-network, eps 0 and 3
    "table8": "table8_fixed_feature.csv",  # fixed-feature accuracy per dataset x arch x L2 eps
    "table9": "table9_full_network.csv",  # full-network, same grid
    "table10": "table10_fixed_feature_32px.csv",  # fixed-feature at the unified 32x32 scale (appendix A.3)
    "table11": "table11_full_network_32px.csv",  # full-network at 32x32
    # RobustBench's ImageNet Linf 4/255 entries (model_info/imagenet/Linf, snapshot 2025-03-31):
    # clean and AutoAttack accuracy (%) on its 5,000-image validation subset
    "robustbench_linf": "robustbench_imagenet_linf.csv",
    # Published ImageNet-pretrained (standard) semantic segmentation baselines rdet's configs are
    # named after: ADE20K / Cityscapes mIoU (%) by head x backbone x schedule, with their sources
    "segmentation": "segmentation_baselines.csv",
}

# rdet catalog names of the models RobustBench lists (the paper's own Linf 4/255 release); a
# catalog entry can also name its RobustBench id itself (``CatalogEntry.robustbench_id``).
ROBUSTBENCH_IDS = {"resnet18_linf_eps4": "Salman2020Do_R18", "resnet50_linf_eps4": "Salman2020Do_R50",
                   "wide_resnet50_2_linf_eps4": "Salman2020Do_50_2"}

# How close an eps must be to a column's: Linf radii are compared as k/255 (0.01569 * 255 =
# 4.001 is 4/255), L2 radii relatively (the grid's nearest neighbours, 0.01 and 0.03, are 3x apart).
LINF_TOL_255 = 0.05
L2_REL_TOL = 0.01


def read_table(name: str) -> List[Dict[str, str]]:
    """Rows of one of the shipped tables (``FILES`` key or file name) as dicts of strings."""
    return [dict(r) for r in _rows(FILES.get(name, name))]


@functools.lru_cache(maxsize=None)
def _rows(fname: str) -> Tuple[Dict[str, str], ...]:
    text = resources.files(__package__).joinpath(fname).read_text()
    return tuple(csv.DictReader(io.StringIO(text)))


def eps_of_label(label: str) -> Optional[float]:
    """An eps label as a radius for images in [0, 1]: ``4/255`` -> 0.01569, ``3`` -> 3.0; ``None``
    for a header that is not an eps (``unlabelled``, ``arch``)."""
    num, _, den = str(label).partition("/")
    try:
        return float(num) / float(den) if den else float(num)
    except ValueError:
        return None


def same_eps(norm: Optional[str], a: float, b: float) -> bool:
    """Whether two radii are the same grid point (Linf as k/255, L2 relatively)."""
    if norm == "linf":
        return abs(a - b) * 255 <= LINF_TOL_255
    return math.isclose(a, b, rel_tol=L2_REL_TOL, abs_tol=1e-6)


def grid_eps(norm: Optional[str], eps: Optional[float]) -> Optional[float]:
    """One value per grid point, so 0.01569 and 4/255 are one configuration: Linf radii rounded to
    k/255 with k to 2 decimals, L2 radii to 6 significant digits."""
    if eps is None:
        return None
    if norm == "linf":
        return round(float(eps) * 255, 2) / 255
    return float(f"{float(eps):.6g}")


def eps_column(labels: Iterable[str], norm: Optional[str], eps: float) -> Optional[str]:
    """The label among ``labels`` whose eps is ``eps`` (see :func:`same_eps`), else ``None``."""
    for label in labels:
        e = eps_of_label(label)
        if e is not None and same_eps(norm, e, eps):
            return label
    return None


def robustbench_entry(model_id: Optional[str]) -> Optional[Dict[str, str]]:
    """RobustBench's row for a model id (clean_acc, autoattack_acc, eps, paper, ...), else ``None``."""
    return next((r for r in read_table("robustbench_linf") if r["model"] == model_id), None) if model_id else None
