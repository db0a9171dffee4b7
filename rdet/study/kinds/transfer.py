"""``classification``: every backbone x dataset x mode x lr x seed, by ``rdet.tasks.transfer``::

    classification:
      config: configs/classify_demo.yaml
      datasets: [{name: fmnist59, dataset: fashion_mnist, opts: [DATA.CLASSES, "[5,6,7,8,9]"]}, {name: digits}]
      modes: [fixed, full]
      mode_opts: {full: [SOLVER.EPOCHS, 5]}   # per-mode overrides
      lrs: [0.01]
      seeds: [0]

Cells ``classify/<dataset>/<backbone>/<mode>/lr<lr>_seed<seed>``; a pretrained backbone's cells
need its pretraining cell."""
from __future__ import annotations

from rdet.config import build_config, get_transfer_cfg
from rdet.study.base import Cell, TaskKind, backbone_weights, need, register_kind, resolve_config
from rdet.report.sections import SectionOutput, register_section


class Classify(TaskKind):
    """Fixed-feature and full-network transfer per backbone x dataset x mode x lr x seed."""
    name, section, order = "classify", "classification", 30

    def expand(self, cls, ex):
        cells = []
        for b in ex.need_backbones("classification"):
            for ds in need(cls, "datasets", "classification"):
                ds = {"name": ds} if isinstance(ds, str) else ds
                label = need(ds, "name", "a classification dataset")
                for mode in cls.get("modes", ["fixed"]):
                    for lr in cls.get("lrs", [0.01]):
                        for seed in cls.get("seeds", [0]):
                            opts = (list(cls.get("opts", [])) + list(ds.get("opts", []))
                                    + list((cls.get("mode_opts", {}) or {}).get(mode, [])))
                            params = {"config": cls.get("config"), "dataset": ds.get("dataset", label), "opts": opts,
                                      "mode": mode, "lr": float(lr), "seed": int(seed), "weights": b.weights,
                                      "producer": b.producer}
                            cells.append(Cell(self.name, f"classify/{label}/{b.name}/{mode}/lr{lr:g}_seed{seed}",
                                              "transfer", params, (b.producer,) if b.producer else ()))
        return cells

    def config(self, cell, study):
        p = cell.params
        return build_config(get_transfer_cfg(), resolve_config(study, p["config"]), None, list(p["opts"]) + [
            "DATA.DATASET", p["dataset"], "TRANSFER.MODE", p["mode"], "SOLVER.BASE_LR", str(p["lr"]),
            "SEED", str(p["seed"]), "MODEL.WEIGHTS", backbone_weights(study, p),
            "OUTPUT_DIR", str(cell.output_dir(study.output_dir))])

    def run(self, cell, study):
        from rdet.tasks import transfer as task

        task.run(self.config(cell, study), resume=True)


register_kind(Classify())


# The report's section for this kind's records (rdet.report.sections: the report loops over them).
@register_section("classification", 30, tasks=("classification",))
def _classification(records, ctx):
    from rdet.report.markdown import classification_markdown, dataset_markdown, table1_markdown, to_csv
    from rdet.report.plots import plot_eps_curves
    from rdet.report.tables import classification_rows, dataset_rows, eps_curves, paper_curves, table1_rows

    rows = classification_rows(records)
    if not rows:
        return None
    md = ("\n## Table 1: best transfer accuracy over architectures, eps and lr\n"
          "L2 models at full resolution. Paper columns: its Table 1; — where the paper has no such dataset.\n\n"
          + table1_markdown(table1_rows(rows))
          + "\n## Transfer to classification (Table 1 style: best over eps and lr; mean [min, max] over seeds)\n"
          "Paper columns: its Table 8/9 (L2), 10/11 (32 px), 6 (Linf) or 7 (other architectures) for the same "
          "dataset, mode, architecture and metric; — where the paper has no such entry.\n\n"
          + classification_markdown(rows)
          + "\n### Datasets\nThe paper's Table 5 beside what each run's data really was.\n\n"
          + dataset_markdown(dataset_rows(records)))
    curves = eps_curves(records)
    return SectionOutput(md, {"classification.csv": to_csv(rows)},
                         plot_eps_curves(curves, paper_curves(curves), ctx.out))
