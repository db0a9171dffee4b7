"""Aggregation of result records into the paper's comparisons.

Classification (Table 1 style): for each (dataset, mode, arch), seeds are averaged per (eps, lr)
configuration first; "standard" is the best such configuration at eps = 0, "robust" the best at
any eps > 0; each is reported as the mean over seeds with its min/max. The paper's numbers for
the same dataset, mode and architecture come from its Tables 8/9 (eps = 0, and the best eps > 0).
Detection (Figure 4 style): box/mask AP of the standard backbone against the best robust one.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from statistics import mean
from typing import Dict, Iterable, List, Optional, Tuple

from rdet.paper import read_table


@dataclass
class Cell:
    """One configuration's result over seeds."""

    eps: float
    lr: Optional[float]
    mean: float
    lo: float
    hi: float
    n: int
    norm: Optional[str] = None


def _eps(rec) -> float:
    return float(rec.get("backbone", {}).get("eps") or 0.0)


def _arch(rec) -> str:
    return rec.get("backbone", {}).get("arch") or "?"


def dataset_label(rec) -> str:
    """The dataset name, with the class subset when the run used one (``fashion_mnist[5-9]``)."""
    classes = rec.get("classes") or []
    if not classes:
        return rec["dataset"]
    c = [int(x) for x in classes]
    span = f"{c[0]}-{c[-1]}" if c == list(range(c[0], c[-1] + 1)) else ",".join(map(str, c))
    return f"{rec['dataset']}[{span}]"


def configurations(records: Iterable[Dict]) -> Dict[Tuple[str, str, str], List[Cell]]:
    """``{(dataset, mode, arch): [Cell per (norm, eps, lr)]}`` for classification records."""
    groups = defaultdict(list)
    for r in records:
        if r.get("task") != "classification":
            continue
        key = (dataset_label(r), r["mode"], _arch(r), r.get("backbone", {}).get("norm"), _eps(r), r.get("lr"))
        groups[key].append(float(r["value"]))
    out = defaultdict(list)
    for (ds, mode, arch, norm, eps, lr), vals in groups.items():
        out[(ds, mode, arch)].append(Cell(eps, lr, mean(vals), min(vals), max(vals), len(vals), norm))
    return out


def best(cells: List[Cell], robust: bool) -> Optional[Cell]:
    pool = [c for c in cells if (c.eps > 0) == robust]
    return max(pool, key=lambda c: c.mean) if pool else None


def paper_name(dataset: str) -> Optional[str]:
    """The paper's name of an rdet dataset label (None for class subsets and offline sets)."""
    from rdet.data.classification import DATASET_CATALOG

    entry = DATASET_CATALOG.get(dataset)
    return entry.paper_name if entry else None


def arch_paper_name(arch: str) -> Optional[str]:
    from rdet.backbones import BACKBONE_REGISTRY

    return BACKBONE_REGISTRY.get(arch).spec.paper_name if arch in BACKBONE_REGISTRY else None


def paper_best(dataset: str, mode: str, arch: str) -> Tuple[Optional[float], Optional[float], Optional[str]]:
    """(standard, best robust, its eps) from the paper's Table 8 (fixed) / 9 (full)."""
    pd, pa = paper_name(dataset), arch_paper_name(arch)
    if not pd or not pa or mode not in ("fixed", "full"):
        return None, None, None
    rows = [r for r in read_table("table8" if mode == "fixed" else "table9")
            if r["dataset"] == pd and r["arch"] == pa]
    std = [float(r["accuracy"]) for r in rows if float(r["eps"]) == 0]
    rob = [(float(r["accuracy"]), r["eps"]) for r in rows if float(r["eps"]) > 0]
    top = max(rob) if rob else (None, None)
    return (std[0] if std else None), top[0], top[1]


def classification_rows(records: List[Dict]) -> List[Dict]:
    rows = []
    for (ds, mode, arch), cells in sorted(configurations(records).items()):
        s, r = best(cells, robust=False), best(cells, robust=True)
        p_std, p_rob, p_eps = paper_best(ds, mode, arch)
        rows.append({"dataset": ds, "mode": mode, "arch": arch,
                     "standard": s, "robust": r, "paper_standard": p_std, "paper_robust": p_rob, "paper_eps": p_eps})
    return rows


def eps_curves(records: List[Dict]) -> Dict[Tuple[str, str, str], List[Tuple[float, float]]]:
    """``{(dataset, mode, arch): [(eps, best-over-lr mean accuracy)]}`` sorted by eps."""
    curves = {}
    for key, cells in configurations(records).items():
        by_eps = defaultdict(list)
        for c in cells:
            by_eps[c.eps].append(c.mean)
        curves[key] = sorted((e, max(v)) for e, v in by_eps.items())
    return curves


_FIG4 = {("voc", False): "VOC Object Detection", ("coco", False): "COCO Object Detection",
         ("coco", True): "COCO Instance Segmentation"}


def detection_rows(records: List[Dict]) -> List[Dict]:
    """Per (dataset, task, schedule): the standard backbone's AP and the best robust one's."""
    groups = defaultdict(list)
    for r in records:
        if r.get("task") == "detection" and r.get("box_AP") is not None:
            groups[(r["dataset"], r.get("detection_task", "detection"), r.get("schedule"))].append(r)
    fig4 = {(row["task"], row["metric"]): row for row in read_table("figure4")}
    rows = []
    for (ds, task, sched), recs in sorted(groups.items()):
        std = [x for x in recs if _eps(x) == 0]
        rob = [x for x in recs if _eps(x) > 0]
        s = max(std, key=lambda x: x["box_AP"]) if std else None
        b = max(rob, key=lambda x: x["box_AP"]) if rob else None
        family = "voc" if "voc" in ds else "coco" if "coco" in ds else None
        paper_task = _FIG4.get((family, task == "instance_segmentation"))
        for metric in ("box_AP", "mask_AP"):
            if metric == "mask_AP" and task != "instance_segmentation":
                continue
            p = fig4.get((paper_task, metric), {})
            rows.append({"dataset": ds, "task": task, "schedule": sched, "metric": metric,
                         "standard": s[metric] if s else None, "robust": b[metric] if b else None,
                         "robust_eps": _eps(b) if b else None, "robust_arch": _arch(b) if b else None,
                         "paper_standard": float(p["standard"]) if p else None,
                         "paper_robust": float(p["robust"]) if p else None})
    return rows


def pretrain_rows(records: List[Dict]) -> List[Dict]:
    return sorted(({"arch": _arch(r), "norm": r["backbone"].get("norm"), "eps": _eps(r), "dataset": r["dataset"],
                    "clean": r.get("value"), "robust": r.get("robust_top1"), "attack": r.get("robust_attack")}
                   for r in records if r.get("task") == "pretrain"), key=lambda x: (x["arch"], x["eps"]))


def table1_rows(cls_rows: List[Dict]) -> List[Dict]:
    """Table 1 proper: per (dataset, mode), the best over architectures of rdet's standard and
    robust results, beside the paper's Table 1 (itself a best over architectures and eps)."""
    t1 = {(r["mode"], r["model"]): r for r in read_table("table1")}
    groups = defaultdict(list)
    for r in cls_rows:
        groups[(r["dataset"], r["mode"])].append(r)
    out = []
    for (ds, mode), rows in sorted(groups.items()):
        pd = paper_name(ds)
        best_of = lambda key: max((r[key].mean for r in rows if r[key] is not None), default=None)  # noqa: E731
        paper = lambda model: float(t1[(mode, model)][pd]) if pd and (mode, model) in t1 and pd in t1[(mode, model)] else None  # noqa: E501,E731
        out.append({"dataset": ds, "mode": mode, "standard": best_of("standard"), "robust": best_of("robust"),
                    "paper_standard": paper("standard"), "paper_robust": paper("robust")})
    return out
