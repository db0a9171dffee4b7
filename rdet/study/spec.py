"""Study files: a declarative grid expanded into cells.

A study YAML has (all sections optional but at least one cell)::

    output_dir: output/my_study
    executor: local            # local | submitit_local | slurm   (submitit for the last two)
    slurm:                     # one job per cell (executor slurm; submitit_local reads timeout_min)
      partition: gpu           # any other key k is sbatch's --k (account, qos, constraint, ...)
      nodes: 1                 # machines per cell
      tasks_per_node: 1        # >1: one process per task, torchrun's RANK/WORLD_SIZE/... exported
      gpus_per_node: 1         #     (pretrain/classify cells run DDP over them; set = GPUs)
      cpus_per_task: 8
      mem_gb: 64
      timeout_min: 720
    pretrain:                  # backbones trained by rdet.pretrain
      config: configs/pretrain_demo.yaml
      opts: [SOLVER.EPOCHS, 2]
      runs: [{name: eps0, eps: 0}, {name: l2_eps1, eps: 1.0, norm: l2}]
    backbones:                 # existing weights: catalog names or files
      - {name: r50_l2_eps3, weights: resnet50_l2_eps3}
    classification:            # every backbone x dataset x mode x lr x seed
      config: configs/classify_demo.yaml
      datasets: [{name: fmnist59, dataset: fashion_mnist, opts: [DATA.CLASSES, "[5,6,7,8,9]"]}, {name: digits}]
      modes: [fixed, full]
      mode_opts: {full: [SOLVER.EPOCHS, 5]}   # per-mode overrides
      lrs: [0.01]
      seeds: [0]
    detection:                 # every (ResNet) backbone x task; then_3x: the paper's COCO protocol
      - {name: coco, config: configs/coco_r50_fpn_1x.yaml, then_3x: configs/coco_r50_fpn_3x.yaml}
    commands:                  # arbitrary steps, e.g. data preparation ({a} filled from grid)
      - {name: "prep_{a}", run: "echo {a}", grid: {a: [1, 2]}}
    select: {...}              # transfer-free model selection (rdet.select.study)

Cells get deterministic output folders under ``output_dir``, so a restarted study finds what is
done (its ``result.json``) and what is half done (its own checkpoint, resumed). A cell's ``deps``
name the cells whose records it reads (its backbone's pretraining, its conversion); the runner
does not run a cell whose deps did not finish.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Tuple

import yaml

from rdet.core.errors import ConfigError

STAGES = ("prepare", "pretrain", "convert", "transfer", "followup")
_TOP_KEYS = {"output_dir", "executor", "slurm", "pretrain", "backbones", "classification", "detection", "commands",
             "name", "description", "select"}  # select: rdet/select/study.py


@dataclass
class Cell:
    kind: str  # a name in rdet.study.cells.CELL_KINDS
    name: str  # unique, also the output sub-folder
    stage: str
    params: Dict[str, Any] = field(default_factory=dict)
    deps: Tuple[str, ...] = ()  # names of the cells whose records or weights this one reads

    def output_dir(self, root: Path) -> Path:
        return Path(root) / self.name


@dataclass
class Study:
    path: Path
    output_dir: Path
    executor: str
    slurm: Dict[str, Any]
    cells: List[Cell]
    detection: List[Dict[str, Any]]
    raw: Dict[str, Any]

    @property
    def description(self) -> str:
        return str(self.raw.get("description", "")).strip()


def _need(d: Dict, key: str, where: str):
    if key not in d:
        raise ConfigError(f"study: {where} needs a '{key}' entry")
    return d[key]


def _fmt_eps(e: float) -> str:
    return f"{float(e):g}"


def load_study(path: str | Path) -> Study:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such study file")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: a study is a YAML mapping")
    unknown = set(raw) - _TOP_KEYS
    if unknown:
        raise ConfigError(f"{path}: unknown study section(s) {', '.join(sorted(unknown))}; "
                          f"known: {', '.join(sorted(_TOP_KEYS))}")
    executor = raw.get("executor", "local")
    if executor not in ("local", "submitit_local", "slurm"):
        raise ConfigError(f"{path}: executor must be local, submitit_local or slurm, not {executor!r}")
    out = Path(raw.get("output_dir", Path("output") / path.stem))
    cells = expand(raw, path)
    if not cells:
        raise ConfigError(f"{path}: the study has no cells")
    names = [c.name for c in cells]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise ConfigError(f"{path}: duplicate cell names {', '.join(sorted(dup))}")
    return Study(path, out, executor, raw.get("slurm", {}) or {}, cells, list(raw.get("detection", []) or []), raw)


def expand(raw: Dict[str, Any], path: Path) -> List[Cell]:
    cells: List[Cell] = []
    for cmd in raw.get("commands", []) or []:
        grid = cmd.get("grid", {}) or {}
        keys = list(grid)
        for values in itertools.product(*(grid[k] for k in keys)) if keys else [()]:
            sub = dict(zip(keys, values))
            cells.append(Cell("command", _need(cmd, "name", "a command").format(**sub), "prepare",
                              {"run": _need(cmd, "run", "a command").format(**sub)}))
    backbones = []  # (name, weights or None, producing cell or None, arch or None)
    pre = raw.get("pretrain")
    if pre:
        for run in _need(pre, "runs", "pretrain"):
            name = f"pretrain/{_need(run, 'name', 'a pretrain run')}"
            params = {"config": pre.get("config"), "opts": list(pre.get("opts", [])) + list(run.get("opts", [])),
                      "eps": float(run.get("eps", 0.0)), "norm": run.get("norm", "l2")}
            cells.append(Cell("pretrain", name, "pretrain", params))
            backbones.append((run["name"], None, name))
    for b in raw.get("backbones", []) or []:
        backbones.append((_need(b, "name", "a backbone"), _need(b, "weights", "a backbone"), None))
    cls = raw.get("classification")
    if cls:
        if not backbones:
            raise ConfigError(f"{path}: classification needs backbones (a pretrain or backbones section)")
        for bname, weights, producer in backbones:
            for ds in _need(cls, "datasets", "classification"):
                ds = {"name": ds} if isinstance(ds, str) else ds
                label = _need(ds, "name", "a classification dataset")
                for mode in cls.get("modes", ["fixed"]):
                    for lr in cls.get("lrs", [0.01]):
                        for seed in cls.get("seeds", [0]):
                            name = f"classify/{label}/{bname}/{mode}/lr{lr:g}_seed{seed}"
                            params = {"config": cls.get("config"), "dataset": ds.get("dataset", label),
                                      "opts": list(cls.get("opts", [])) + list(ds.get("opts", []))
                                      + list((cls.get("mode_opts", {}) or {}).get(mode, [])), "mode": mode,
                                      "lr": float(lr), "seed": int(seed), "weights": weights, "producer": producer}
                            cells.append(Cell("classify", name, "transfer", params, (producer,) if producer else ()))
    for task in raw.get("detection", []) or []:
        if not backbones:
            raise ConfigError(f"{path}: detection needs backbones (a pretrain or backbones section)")
        label = _need(task, "name", "a detection task")
        _need(task, "config", f"detection task {label}")
        for bname, weights, producer in backbones:
            conv = f"convert/{bname}"
            if conv not in {c.name for c in cells}:
                cells.append(Cell("convert", conv, "convert", {"weights": weights, "producer": producer},
                                  (producer,) if producer else ()))
            cells.append(Cell("detect", f"detect/{label}/{bname}", "transfer",
                              {"config": task["config"], "opts": list(task.get("opts", [])), "convert": conv,
                               "backbone": bname}, (conv,)))
    if raw.get("select") is not None:
        from rdet.select.study import select_cells  # registers the cell kind (also in submitit jobs)

        cells += select_cells(raw["select"], backbones, path)
    return cells
