"""Result records: one JSON file per finished run, the only thing the study runner and the report
read. Written atomically, so a file that exists was written whole; one that does not parse as a
record (edited, truncated by a disk error, not rdet's) is *unreadable*: the study runs its cell
again, the report skips it, and both name the file (:class:`RecordError`).

Common fields: ``task`` ("classification", "detection", "pretrain", ...), ``dataset``, ``backbone``
(``{"arch", "norm", "eps", "source"}``; ``eps`` null when unknown, e.g. an evaluation of a file
without metadata), ``seed``, ``wall_time_s``, ``data_note`` (what the data really was: a demo says
so). Classification adds ``mode`` ("fixed"/"full"), ``metric`` ("top1"/"mean_per_class"),
``value`` (percent), ``lr``, ``epochs``, ``downscale``; detection adds ``box_AP``, ``box_AP50``,
``box_AP75``, ``mask_AP`` (percent or null), ``iterations``, ``schedule``.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

from rdet.core.atomic import save_json
from rdet.core.errors import RecordError, first_line

RECORD_NAME = "result.json"


def write_record(output_dir: str | os.PathLike, record: Dict[str, Any]) -> Path:
    """The one writer of ``result.json`` (atomically): every task's record goes through here, so
    a record that lacks what every reader relies on (its ``task``; a ``backbone`` mapping where it
    names one) is a programming error caught where it is made, not in the report."""
    if not isinstance(record.get("task"), str) or not record["task"]:
        raise ValueError(f"a result record needs a 'task' (got {record.get('task')!r})")
    if "backbone" in record and not isinstance(record["backbone"], dict):
        raise ValueError(f"a result record's 'backbone' is a mapping (arch, norm, eps, source), not "
                         f"{type(record['backbone']).__name__}")
    path = Path(output_dir) / RECORD_NAME
    save_json(record, path)
    return path


def read_record(path: str | os.PathLike) -> Dict[str, Any]:
    """The record in ``path``; :class:`RecordError` naming the file if it is missing or is not a
    JSON object with a ``task``."""
    path = Path(path)
    try:
        rec = json.loads(path.read_text())
    except FileNotFoundError:
        raise RecordError(f"{path}: no such result record") from None
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise RecordError(f"{path}: unreadable result record ({first_line(e)})") from None
    if not isinstance(rec, dict) or not isinstance(rec.get("task"), str):
        raise RecordError(f"{path}: unreadable result record (not a JSON object with a 'task')")
    return rec


def has_record(output_dir: str | os.PathLike) -> bool:
    """Whether ``output_dir`` holds a readable record (an unreadable one means: not finished)."""
    return record_problem(output_dir) is None and (Path(output_dir) / RECORD_NAME).is_file()


def record_problem(output_dir: str | os.PathLike) -> Optional[str]:
    """Why ``output_dir``'s record is unreadable (a one-line message naming it), or None when it
    is readable or absent."""
    path = Path(output_dir) / RECORD_NAME
    if not path.exists():
        return None
    try:
        read_record(path)
    except RecordError as e:
        return str(e)
    return None


def iter_records(root: str | os.PathLike, bad: Optional[List[Tuple[str, str]]] = None) -> Iterator[Dict[str, Any]]:
    """Every record under ``root``, each with ``_path`` set to where it was read from.

    Unreadable files raise :class:`RecordError`, or, when a list ``bad`` is given, are skipped and
    appended to it as ``(path, message)``."""
    for path in sorted(Path(root).rglob(RECORD_NAME)):
        try:
            rec = read_record(path)
        except RecordError as e:
            if bad is None:
                raise
            bad.append((str(path), str(e)))
            continue
        rec["_path"] = str(path)
        yield rec


def dataset_label(rec) -> str:
    """The dataset name, with the class subset when the run used one (``fashion_mnist[5-9]``)."""
    classes = rec.get("classes") or []
    if not classes:
        return rec["dataset"]
    c = [int(x) for x in classes]
    span = f"{c[0]}-{c[-1]}" if c == list(range(c[0], c[-1] + 1)) else ",".join(map(str, c))
    return f"{rec['dataset']}[{span}]"
