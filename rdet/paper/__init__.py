"""The paper's published numbers (Salman et al. 2020), shipped verbatim as CSV package data and
read at run time, so the report can print them beside rdet's results. See ``tables``."""
from __future__ import annotations

import csv
import io
from importlib import resources
from typing import Dict, List

FILES = {
    "table1": "table1_best.csv",  # best accuracy per dataset: mode x {robust, standard}
    "figure4": "figure4_detection_ap.csv",  # VOC/COCO AP, standard vs best robust
    "table8": "table8_fixed_feature.csv",  # fixed-feature accuracy per dataset x arch x L2 eps
    "table9": "table9_full_network.csv",  # full-network, same grid
    "table3": "table3_imagenet_clean_l2.csv",
    "table5": "table5_datasets.csv",
}


def read_table(name: str) -> List[Dict[str, str]]:
    """Rows of one of the paper's tables (``FILES`` key or file name) as dicts of strings."""
    fname = FILES.get(name, name)
    text = resources.files(__package__).joinpath(fname).read_text()
    return list(csv.DictReader(io.StringIO(text)))
