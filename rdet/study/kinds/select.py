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
from rdet.study.base import Cell, TaskKind, backbone_weights, mapping_section, register_kind, resolve_config
from rdet.report.sections import SectionOutput, register_section

KEYS = {"config", "dataset", "opts", "cache_dir", "allow_pickle"}


class Select(TaskKind):
    """Transfer-free fixed-feature model selection (``rdet.select``), one cell per backbone."""
    name, section, order = "select", "select", 50

    def expand(self, section, ex):
        mapping_section(section, KEYS, "select", ex.path)
        if "dataset" not in section:
            raise ConfigError(f"{ex.path}: the select section needs a 'dataset' entry")
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


# The report's section for this kind's records (rdet.report.sections: the report loops over them).
@register_section("selection", 60, tasks=("select",))
def _selection(records, ctx):
    """``rdet select``'s ranking (its cells' records, one table per target dataset)."""
    from collections import defaultdict

    from rdet.select.ranking import markdown, ranked_rows

    groups = defaultdict(list)
    for r in records:
        if r.get("task") == "select" and r.get("val_value") is not None:
            groups[(r.get("dataset"), tuple(r.get("classes") or ()), r.get("data_note"))].append(r)
    if not groups:
        return None
    parts = [markdown(ranked_rows(recs)).replace("# Backbone ranking", "## Backbone ranking (rdet select)", 1)
             .replace("\n## Transferability", "\n### Transferability") for recs in groups.values()]
    return SectionOutput("\n" + "\n".join(parts))


@register_section("transferability", 65)
def _transferability(records, ctx):
    """Each estimator's agreement with the fine-tuned (or validation) ranking, from the
    ``estimators.json`` / ``against_paper.json`` that ``rdet select`` leaves in its folder."""
    from rdet.report.transferability import section, selection_records

    folders = sorted({p.parent for name in ("estimators.json", "against_paper.json")
                      for p in ctx.runs_dir.rglob(name) if not p.is_relative_to(ctx.out)})
    recs = [r for folder in folders for r in selection_records(folder)]
    md = section(recs) if recs else ""
    return SectionOutput("\n" + md) if md else None
