"""Result records: one JSON file per finished run, the only thing the study runner and the report
read. Written atomically, so a file that exists is a finished run.

Common fields: ``task`` ("classification", "detection", "pretrain"), ``dataset``, ``backbone``
(``{"arch", "norm", "eps", "source"}``), ``seed``, ``wall_time_s``, ``data_note`` (what the data
really was: a demo says so). Classification adds ``mode`` ("fixed"/"full"), ``metric``
("top1"/"mean_per_class"), ``value`` (percent), ``lr``, ``epochs``, ``downscale``; detection adds
``box_AP``, ``box_AP50``, ``box_AP75``, ``mask_AP`` (percent or null), ``iterations``, ``schedule``.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Dict, Iterator

from rdet.atomic import save_json

RECORD_NAME = "result.json"


def write_record(output_dir: str | os.PathLike, record: Dict[str, Any]) -> Path:
    path = Path(output_dir) / RECORD_NAME
    save_json(record, path)
    return path


def read_record(path: str | os.PathLike) -> Dict[str, Any]:
    return json.loads(Path(path).read_text())


def has_record(output_dir: str | os.PathLike) -> bool:
    return (Path(output_dir) / RECORD_NAME).is_file()


def iter_records(root: str | os.PathLike) -> Iterator[Dict[str, Any]]:
    """Every record under ``root``, each with ``_path`` set to where it was read from."""
    for path in sorted(Path(root).rglob(RECORD_NAME)):
        rec = read_record(path)
        rec["_path"] = str(path)
        yield rec
