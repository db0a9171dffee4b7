"""``transferability``: transferability estimators per backbone x target dataset, judged against the
study's own fine-tuning::

    transferability:
      config: rdet/configs/select_demo.yaml        # an ordinary selection config (optional)
      estimators: [logme, leep, knn]                # SELECT.ESTIMATORS; linear (the heads) always runs
      datasets:                                     # the classification section's dataset entries
        - {name: fmnist_5to9, dataset: fashion_mnist, opts: [DATA.CLASSES, "[5, 6, 7, 8, 9]"]}
        - {name: digits}
      opts: [SELECT.VIEWS, 1]
      cache_dir: /scratch/features                  # default: <output_dir>/feature_cache

One cell per target and backbone (``estimate/<target>/<backbone>``): the backbone's features are
extracted once into the feature cache (the one ``rdet select`` and the select section use: the
same settings hit the same entry), the validation-split heads are trained (``linear``) and every
estimator scores the cached features (:func:`rdet.select.scoring.score_record`). Its record is the
selection record of that backbone (``task: transferability``) plus ``target`` and ``estimators``.

The report section (:func:`rdet.report.transferability.study_records`) sets every estimator's
ranking of the backbones, per target, against each ground truth the study holds: the selection's
validation and test accuracy, and the fine-tuned accuracy of the classification section's cells
on the same data (fixed-feature and full-network: best learning rate of the mean over seeds, the
paper's protocol), with Kendall tau, weighted tau, top-1 regret and the cost ratio to fine-tuning
every candidate; the ranking itself, with each estimator's score and rank, is beside it.
"""
from __future__ import annotations

from pathlib import Path

from rdet.config import build_config, get_select_cfg
from rdet.core.errors import ConfigError
from rdet.core.records import write_record
from rdet.report.sections import SectionOutput, register_section
from rdet.study.base import Cell, TaskKind, backbone_weights, mapping_section, need, register_kind, resolve_config

KEYS = {"config", "estimators", "datasets", "opts", "cache_dir", "allow_pickle"}


class Estimate(TaskKind):
    """Transferability estimators (and the linear heads) per target dataset x backbone."""
    name, section, order = "estimate", "transferability", 52

    def expand(self, section, ex):
        mapping_section(section, KEYS, "transferability", ex.path)
        estimators = need(section, "estimators", "the transferability section", ex.path)
        if not isinstance(estimators, list) or not estimators or not all(isinstance(e, str) for e in estimators):
            raise ConfigError(f"{ex.path}: transferability: estimators must be a list of names, e.g. [logme, knn]")
        datasets = need(section, "datasets", "the transferability section", ex.path)
        if not isinstance(datasets, list) or not datasets:
            raise ConfigError(f"{ex.path}: transferability: datasets must be a non-empty list")
        cells = []
        for ds in datasets:
            ds = {"name": ds} if isinstance(ds, str) else ds
            label = need(ds, "name", "a transferability dataset", ex.path)
            for b in ex.need_backbones("transferability"):
                params = {"config": section.get("config"), "dataset": ds.get("dataset", label), "target": label,
                          "opts": list(section.get("opts", [])) + list(ds.get("opts", [])),
                          "estimators": ["linear"] + [e for e in estimators if e != "linear"],
                          "cache_dir": section.get("cache_dir"), "allow_pickle": bool(section.get("allow_pickle")),
                          "model": b.name, "weights": b.weights, "producer": b.producer}
                cells.append(Cell(self.name, f"estimate/{label}/{b.name}", "transfer", params,
                                  (b.producer,) if b.producer else ()))
        return cells

    def config(self, cell, study):
        p = cell.params
        return build_config(get_select_cfg(), resolve_config(study, p["config"]), None, list(p["opts"]) + [
            "DATA.DATASET", p["dataset"], "SELECT.ESTIMATORS", repr(list(p["estimators"]))])

    def run(self, cell, study):
        """Features (cached), the heads, then every estimator on the cached features."""
        from rdet.select.fixed import select_one
        from rdet.select.scoring import score_record

        p = cell.params
        cfg = self.config(cell, study)
        cache = Path(p["cache_dir"]) if p.get("cache_dir") else Path(study.output_dir) / "feature_cache"
        weights = backbone_weights(study, p)
        rec = select_one(cfg, weights, cache, p["model"], allow_pickle=p["allow_pickle"])
        rec["estimators"] = score_record(rec, list(cfg.SELECT.ESTIMATORS), cfg, p["allow_pickle"])
        rec.update(task="transferability", target=p["target"])
        out = cell.output_dir(study.output_dir)
        out.mkdir(parents=True, exist_ok=True)
        write_record(out, rec)

    def summary(self, rec):
        scored = [f"{n} {s['score']:.4g}" for n, s in rec.get("estimators", {}).items()
                  if n != "linear" and s.get("score") is not None]
        return f"val {rec['val_value']:.2f}" + (f"; {', '.join(scored)}" if scored else "")


register_kind(Estimate())


# The report's section for this kind's records (rdet.report.sections: the report loops over them).
@register_section("transferability_study", 62, tasks=("transferability",))
def _estimators(records, ctx):
    """Per target: the ranking with every estimator's score and rank, then each estimator's
    agreement with every ground truth the study holds (rdet.report.transferability)."""
    from rdet.report.transferability import section, study_rankings, study_records

    rankings = study_rankings(records)
    if not rankings:
        return None
    md = section(study_records(records), "Transferability estimators (study)")
    return SectionOutput("\n" + "\n".join(rankings) + "\n" + md)
