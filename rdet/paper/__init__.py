"""The paper's published numbers (Salman et al. 2020), shipped verbatim as CSV package data and
read at run time, so the report can print them beside rdet's results. See ``tables``."""
from __future__ import annotations

import csv
import functools
import io
from importlib import resources
from typing import Dict, List, Tuple

FILES = {  # every one is read by rdet.report.tables
    "table1": "table1_best.csv",  # best accuracy per dataset: mode x {robust, standard}
    "figure4": "figure4_detection_ap.csv",  # VOC/COCO AP, standard vs best robust
    "table3": "table3_imagenet_clean_l2.csv",  # ImageNet clean top-1 of the L2 ResNets, per eps
    "table3b": "table3b_other_archs_imagenet.csv",  # the same for the six other architectures (eps 0, 3)
    "table4": "table4_imagenet_clean_linf.csv",  # ImageNet clean top-1 of the Linf ResNets (header as printed)
    "table5": "table5_datasets.csv",  # the 12 transfer datasets: classes, train/test sizes, metric
    "table6": "table6_linf_transfer_cifar.csv",  # Linf backbones -> CIFAR-10/100, per eps
    "table7": "table7_arch_full_network.csv",  # six other architectures, full-network, eps 0 and 3
    "table8": "table8_fixed_feature.csv",  # fixed-feature accuracy per dataset x arch x L2 eps
    "table9": "table9_full_network.csv",  # full-network, same grid
    "table10": "table10_fixed_feature_32px.csv",  # fixed-feature at the unified 32x32 scale (appendix A.3)
    "table11": "table11_full_network_32px.csv",  # full-network at 32x32
}


def read_table(name: str) -> List[Dict[str, str]]:
    """Rows of one of the paper's tables (``FILES`` key or file name) as dicts of strings."""
    return [dict(r) for r in _rows(FILES.get(name, name))]


@functools.lru_cache(maxsize=None)
def _rows(fname: str) -> Tuple[Dict[str, str], ...]:
    text = resources.files(__package__).joinpath(fname).read_text()
    return tuple(csv.DictReader(io.StringIO(text)))
