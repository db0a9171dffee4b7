"""The ``select`` section of a study file and its cell kind.

A study's ``select`` section ranks every backbone of the study (its ``pretrain`` runs and its
``backbones``), one ``select`` cell per backbone::

    backbones: [{name: r50_l2_eps3, weights: resnet50_l2_eps3}, {name: mine, weights: /ckpt/mine.pth}]
    select:
      config: rdet/configs/select_demo.yaml   # an ordinary transfer config (optional)
      dataset: fashion_mnist
      opts: [DATA.CLASSES, "[5, 6, 7, 8, 9]", SELECT.VIEWS, 5]
      cache_dir: /scratch/features            # default: <output_dir>/feature_cache

Importing this module registers the cell kind in ``rdet.study.CELL_KINDS``; ``rdet.study.spec``
imports it when a study has a ``select`` section, so submitit jobs (which reload the study) have
it too. Each cell writes ``select/<backbone>/result.json`` (``task: select``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Sequence, Tuple

from rdet.config import merge_config
from rdet.core.errors import ConfigError
from rdet.core.records import write_record
from rdet.config import get_select_cfg
from rdet.study.cells import CELL_KINDS, _resolve
from rdet.study.spec import Cell

STAGE = "transfer"


def select_cells(section: Dict[str, Any], backbones: Sequence[Tuple], path: Path) -> List[Cell]:
    """One cell per backbone ``(name, weights or None, producing cell or None)``."""
    if not isinstance(section, dict) or "dataset" not in section:
        raise ConfigError(f"{path}: the select section needs a 'dataset' entry")
    if not backbones:
        raise ConfigError(f"{path}: select needs backbones (a pretrain or backbones section)")
    unknown = set(section) - {"config", "dataset", "opts", "cache_dir", "allow_pickle"}
    if unknown:
        raise ConfigError(f"{path}: unknown select entries {', '.join(sorted(unknown))}")
    cells = []
    for name, weights, producer in (b[:3] for b in backbones):
        params = {"config": section.get("config"), "dataset": section["dataset"], "opts": list(section.get("opts", [])),
                  "cache_dir": section.get("cache_dir"), "allow_pickle": bool(section.get("allow_pickle", False)),
                  "model": name, "weights": weights, "producer": producer}
        cells.append(Cell("select", f"select/{name}", STAGE, params, (producer,) if producer else ()))
    return cells


def cell_cfg(study, params: Dict[str, Any]):
    cfg = merge_config(get_select_cfg(), _resolve(study, params["config"]), params["opts"])
    return merge_config(cfg, None, ["DATA.DATASET", params["dataset"]])


def cell_weights(study, params: Dict[str, Any]) -> str:
    if params.get("producer"):
        return str(Path(study.output_dir) / params["producer"] / "model_final.pth")
    return params["weights"]


@CELL_KINDS.register()
def select(cell, study):
    """Fixed-feature selection of one backbone (``rdet.select.fixed.select_one``)."""
    from rdet.select.fixed import select_one

    p = cell.params
    cache = Path(p["cache_dir"]) if p.get("cache_dir") else Path(study.output_dir) / "feature_cache"
    rec = select_one(cell_cfg(study, p), cell_weights(study, p), cache, p["model"], allow_pickle=p["allow_pickle"])
    out = cell.output_dir(study.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_record(out, rec)
