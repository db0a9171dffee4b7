"""``select``: transfer-free model selection (``rdet.select``), one cell per backbone of the study::

    backbones: [{name: r50_l2_eps3, weights: resnet50_l2_eps3}, {name: mine, weights: /ckpt/mine.pth}]
    select:
      config: rdet/configs/select_demo.yaml   # an ordinary transfer config (optional)
      dataset: fashion_mnist
      opts: [DATA.CLASSES, "[5, 6, 7, 8, 9]", SELECT.VIEWS, 5]
      cache_dir: /scratch/features            # default: <output_dir>/feature_cache

Each cell writes ``select/<backbone>/result.json`` (``task: select``)."""
from __future__ import annotations

from pathlib import Path

from rdet.config import build_config, get_select_cfg
from rdet.core.errors import ConfigError
from rdet.core.records import write_record
from rdet.study.base import Cell, TaskKind, backbone_weights, register_kind, resolve_config

KEYS = {"config", "dataset", "opts", "cache_dir", "allow_pickle"}


class Select(TaskKind):
    """Transfer-free fixed-feature model selection (``rdet.select``), one cell per backbone."""
    name, section, order = "select", "select", 50

    def expand(self, section, ex):
        if not isinstance(section, dict) or "dataset" not in section:
            raise ConfigError(f"{ex.path}: the select section needs a 'dataset' entry")
        unknown = set(section) - KEYS
        if unknown:
            raise ConfigError(f"{ex.path}: unknown select entries {', '.join(sorted(unknown))}")
        cells = []
        for b in ex.need_backbones("select"):
            params = {"config": section.get("config"), "dataset": section["dataset"],
                      "opts": list(section.get("opts", [])), "cache_dir": section.get("cache_dir"),
                      "allow_pickle": bool(section.get("allow_pickle", False)), "model": b.name,
                      "weights": b.weights, "producer": b.producer}
            cells.append(Cell(self.name, f"select/{b.name}", "transfer", params, (b.producer,) if b.producer else ()))
        return cells

    def config(self, cell, study):
        p = cell.params
        return build_config(get_select_cfg(), resolve_config(study, p["config"]), None,
                            list(p["opts"]) + ["DATA.DATASET", p["dataset"]])

    def run(self, cell, study):
        """Fixed-feature selection of one backbone (``rdet.select.fixed.select_one``)."""
        from rdet.select.fixed import select_one

        p = cell.params
        cfg = self.config(cell, study)
        cache = Path(p["cache_dir"]) if p.get("cache_dir") else Path(study.output_dir) / "feature_cache"
        rec = select_one(cfg, backbone_weights(study, p), cache, p["model"], allow_pickle=p["allow_pickle"])
        out = cell.output_dir(study.output_dir)
        out.mkdir(parents=True, exist_ok=True)
        write_record(out, rec)


register_kind(Select())
