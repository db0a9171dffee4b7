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
from rdet.study.base import Cell, TaskKind, backbone_weights, register_kind, resolve_config
from rdet.study.kinds.commands import need


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
