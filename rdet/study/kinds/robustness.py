"""``robustness``: every backbone evaluated clean and under attack by ``rdet.tasks.robustness``
(PGD and/or AutoAttack at every ``ATTACK.EPS``)::

    robustness:
      config: configs/evaluate_demo.yaml     # optional: an evaluation (or transfer) config
      dataset: imagenet                      # DATA.DATASET
      attacks: [pgd, autoattack]             # ATTACK.TYPES
      opts: [ATTACK.NORM, linf, ATTACK.EPS, "[0.0156862745]", EVAL.SUBSET, robustbench]

Cells ``robustness/<backbone>`` (a pretrained backbone's cell needs its pretraining); a killed
evaluation resumes batch by batch."""
from __future__ import annotations

from rdet.config import get_evaluate_cfg, merge_config
from rdet.study.base import Cell, TaskKind, backbone_weights, mapping_section, register_kind, resolve_config
from rdet.report.sections import SectionOutput, register_section

KEYS = {"config", "dataset", "attacks", "opts"}


class Robustness(TaskKind):
    """Clean, PGD and AutoAttack accuracy of every backbone (``rdet.tasks.robustness``)."""
    name, section, order = "robustness", "robustness", 45

    def expand(self, section, ex):
        mapping_section(section, KEYS, "robustness", ex.path)
        return [Cell(self.name, f"robustness/{b.name}", "transfer",
                     {"config": section.get("config"), "dataset": section.get("dataset"),
                      "attacks": list(section.get("attacks") or []), "opts": list(section.get("opts", [])),
                      "weights": b.weights, "producer": b.producer}, (b.producer,) if b.producer else ())
                for b in ex.need_backbones("robustness")]

    def config(self, cell, study):
        from rdet.config.schema import check_cfg
        from rdet.tasks.robustness import merge_config_file

        p = cell.params
        cfg = get_evaluate_cfg()
        if p["config"]:  # an evaluation config, or the DATA/RUNTIME sections of a training one
            merge_config_file(cfg, resolve_config(study, p["config"]))
        own = ["MODEL.WEIGHTS", backbone_weights(study, p), "OUTPUT_DIR", str(cell.output_dir(study.output_dir))]
        if p["dataset"]:
            own += ["DATA.DATASET", p["dataset"]]
        if p["attacks"]:
            own += ["ATTACK.TYPES", str(p["attacks"])]
        merge_config(cfg, None, list(p["opts"]) + own)
        check_cfg(cfg)
        return cfg

    def run(self, cell, study):
        from rdet.tasks import robustness as task

        task.run(self.config(cell, study))

    def summary(self, rec):
        worst = min((a["robust_top1"] for a in rec.get("attacks") or []), default=None)
        tail = f", worst attack top-1 {worst:.2f}%" if worst is not None else ""
        return f"clean top-1 {rec['clean_top1']:.2f}%{tail}"


register_kind(Robustness())


# The report's section for this kind's records (rdet.report.sections: the report loops over them).
@register_section("robustness", 40, tasks=("robustness",))
def _robustness(records, ctx):
    from rdet.report.markdown import robustness_markdown, to_csv
    from rdet.report.robustness import robustness_rows

    rows = robustness_rows(records)
    if not rows:
        return None
    return SectionOutput("\n## Robust accuracy (rdet.evaluate): PGD and AutoAttack, never pooled\n"
                         "One row per attack and its settings; AutoAttack − PGD against the strongest PGD of the same "
                         "model, data and eps. RobustBench's numbers beside its models; Δ only for rows measured as "
                         "RobustBench does.\n\n" + robustness_markdown(rows), {"robustness.csv": to_csv(rows)})
