"""Aggregation of result records into the paper's comparisons.

Classification (Table 1 style): for each (dataset, mode, arch, input scale, norm), seeds are
averaged per (eps, lr) configuration first; "standard" is the best such configuration at eps = 0,
"robust" the best at eps > 0 of that norm; each is reported as the mean over seeds with its
min/max. The paper's numbers for the same dataset, mode, architecture and norm come from:
Tables 8/9 (L2, full resolution), 10/11 (L2, ``--downscale 32``), 6 (Linf, CIFAR) and 7 (the six
other architectures, full-network, eps 0 and 3); only where the record's metric is the paper's
(Table 5). Pretraining on ImageNet: the paper's clean accuracy (Tables 3, 3b, 4).
Detection (Figure 4 style): box/mask AP of the standard backbone against the best robust one.

A record whose source model's eps is unknown (``backbone.eps`` null, e.g. an evaluation of a file
without metadata) is counted as neither standard nor robust: it is listed on its own.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from statistics import mean
from typing import Dict, Iterable, List, Optional, Tuple

from rdet.paper import read_table


@dataclass
class ConfigResult:
    """One configuration's (eps, lr) result over seeds."""

    eps: float
    lr: Optional[float]
    mean: float
    lo: float
    hi: float
    n: int
    norm: Optional[str] = None


def _eps(rec) -> Optional[float]:
    """The source model's eps; None when unknown (never read as 0)."""
    e = (rec.get("backbone") or {}).get("eps")
    return None if e is None else float(e)


def _arch(rec) -> str:
    return (rec.get("backbone") or {}).get("arch") or "?"


def _norm(rec) -> str:
    return (rec.get("backbone") or {}).get("norm") or "l2"


def eps_text(norm: Optional[str], eps: Optional[float]) -> str:
    """eps as the paper prints it (``3``, ``4/255``); ``unknown`` for None."""
    if eps is None:
        return "unknown"
    return f"{eps * 255:g}/255" if norm == "linf" and eps > 0 else f"{eps:g}"


def dataset_label(rec) -> str:
    """The dataset name, with the class subset when the run used one (``fashion_mnist[5-9]``)."""
    classes = rec.get("classes") or []
    if not classes:
        return rec["dataset"]
    c = [int(x) for x in classes]
    span = f"{c[0]}-{c[-1]}" if c == list(range(c[0], c[-1] + 1)) else ",".join(map(str, c))
    return f"{rec['dataset']}[{span}]"


Key = Tuple[str, str, str, int, str]  # (dataset label, mode, arch, downscale, metric)


def configurations(records: Iterable[Dict]) -> Dict[Key, List[ConfigResult]]:
    """``{(dataset, mode, arch, downscale, metric): [ConfigResult per (norm, eps, lr)]}`` for the
    classification records whose eps is known."""
    groups = defaultdict(list)
    for r in records:
        if r.get("task") != "classification" or _eps(r) is None:
            continue
        key = (dataset_label(r), r["mode"], _arch(r), int(r.get("downscale") or 0), r.get("metric") or "top1",
               _norm(r), _eps(r), r.get("lr"))
        groups[key].append(float(r["value"]))
    out = defaultdict(list)
    for (ds, mode, arch, down, metric, norm, eps, lr), vals in groups.items():
        out[(ds, mode, arch, down, metric)].append(ConfigResult(eps, lr, mean(vals), min(vals), max(vals), len(vals),
                                                                norm))
    return out


def best(cells: List[ConfigResult], robust: bool, norm: Optional[str] = None) -> Optional[ConfigResult]:
    pool = [c for c in cells if (c.eps > 0) == robust and (norm is None or not robust or c.norm == norm)]
    return max(pool, key=lambda c: c.mean) if pool else None


def paper_name(dataset: str) -> Optional[str]:
    """The paper's name of an rdet dataset label (None for class subsets and offline sets)."""
    from rdet.data.classification import DATASET_CATALOG

    entry = DATASET_CATALOG.get(dataset)
    return entry.paper_name if entry else None


def arch_paper_name(arch: str) -> Optional[str]:
    from rdet.backbones import BACKBONE_REGISTRY

    return BACKBONE_REGISTRY.get(arch).spec.paper_name if arch in BACKBONE_REGISTRY else None


def paper_metric(paper_dataset: str) -> Optional[str]:
    """The metric the paper reports for a dataset (its Table 5)."""
    return next((r["metric"] for r in read_table("table5") if r["dataset"] == paper_dataset), None)


def _from_long(table: str, pd: str, pa: str, mode: str) -> List[Tuple[str, float]]:
    """(eps label, accuracy) rows of a long-format table (8-11: dataset, arch, norm, eps, mode)."""
    return [(r["eps"], float(r["accuracy"])) for r in read_table(table)
            if r["dataset"] == pd and r["arch"] == pa and r["mode"].startswith(mode)]


def _from_wide(table: str, match: Dict[str, str]) -> List[Tuple[str, float]]:
    """(eps label, accuracy) from a table with one column per eps (Table 6: dataset, mode, arch)."""
    for r in read_table(table):
        if all(r[k] == v for k, v in match.items()):
            return [(k, float(v)) for k, v in r.items() if k not in match and v]
    return []


def _from_table7(pd: str, pa: str) -> List[Tuple[str, float]]:
    """(eps, accuracy) of the six other architectures, full-network (Table 7: eps 0 and 3)."""
    return [(r["eps"], float(r[pa])) for r in read_table("table7") if r["dataset"] == pd and r.get(pa)]


def _eps_value(label: str) -> float:
    num, _, den = label.partition("/")
    return float(num) / float(den) if den else float(num)


def paper_points(dataset: str, mode: str, arch: str, norm: str = "l2", downscale: int = 0,
                 metric: Optional[str] = None) -> Tuple[List[Tuple[str, float]], Optional[str]]:
    """The paper's ``[(eps label, accuracy)]`` for a classification setting and the table they
    come from; ``([], None)`` where the paper has none (or reports another metric)."""
    pd, pa = paper_name(dataset), arch_paper_name(arch)
    if not pd or not pa or mode not in ("fixed", "full") or (metric and paper_metric(pd) not in (None, metric)):
        return [], None
    if norm == "linf":
        pts = _from_wide("table6", {"dataset": pd, "mode": mode, "arch": pa}) if not downscale else []
        return pts, "Table 6" if pts else None
    if downscale == 32:
        table = "table10" if mode == "fixed" else "table11"
        pts = _from_long(table, pd, pa, mode)
        return pts, f"Table {table[5:]}" if pts else None
    if downscale:
        return [], None
    pts = _from_long("table8" if mode == "fixed" else "table9", pd, pa, mode)
    if pts:
        return pts, "Table 8" if mode == "fixed" else "Table 9"
    pts = _from_table7(pd, pa) if mode == "full" else []
    return pts, "Table 7" if pts else None


def paper_best(dataset: str, mode: str, arch: str, norm: str = "l2", downscale: int = 0,
               metric: Optional[str] = None) -> Tuple[Optional[float], Optional[float], Optional[str], Optional[str]]:
    """(standard, best robust, its eps label, source table) from :func:`paper_points`."""
    pts, source = paper_points(dataset, mode, arch, norm, downscale, metric)
    std = [a for e, a in pts if _eps_value(e) == 0]
    rob = [(a, e) for e, a in pts if _eps_value(e) > 0]
    top = max(rob) if rob else (None, None)
    return (std[0] if std else None), top[0], top[1], source


def classification_rows(records: List[Dict]) -> List[Dict]:
    """One row per (dataset, mode, arch, input scale, norm of the robust models)."""
    rows = []
    for (ds, mode, arch, down, metric), cells in sorted(configurations(records).items()):
        norms = sorted({c.norm for c in cells if c.eps > 0}) or ["l2"]
        for norm in norms:
            s, r = best(cells, robust=False), best(cells, robust=True, norm=norm)
            p_std, p_rob, p_eps, source = paper_best(ds, mode, arch, norm, down, metric)
            rows.append({"dataset": ds, "mode": mode, "arch": arch, "downscale": down, "norm": norm,
                         "metric": metric, "standard": s, "robust": r, "paper_standard": p_std,
                         "paper_robust": p_rob, "paper_eps": p_eps, "paper_table": source})
    return rows


Curve = Tuple[str, str, str, int, str]  # (dataset, mode, arch, downscale, norm)


def eps_curves(records: List[Dict]) -> Dict[Curve, List[Tuple[float, float]]]:
    """``{(dataset, mode, arch, downscale, norm): [(eps, best-over-lr mean accuracy)]}`` sorted by
    eps; the eps-0 point belongs to every norm's curve."""
    curves = {}
    for (ds, mode, arch, down, _), cells in configurations(records).items():
        for norm in sorted({c.norm for c in cells if c.eps > 0}) or ["l2"]:
            by_eps = defaultdict(list)
            for c in cells:
                if c.eps == 0 or c.norm == norm:
                    by_eps[c.eps].append(c.mean)
            curves[(ds, mode, arch, down, norm)] = sorted((e, max(v)) for e, v in by_eps.items())
    return curves


def paper_curves(curves: Dict[Curve, List]) -> Dict[Curve, List[Tuple[float, float]]]:
    """The paper's points for each of rdet's curves, where it has them."""
    out = {}
    for key in curves:
        ds, mode, arch, down, norm = key
        pts, _ = paper_points(ds, mode, arch, norm, down)
        if pts:
            out[key] = sorted((_eps_value(e), a) for e, a in pts)
    return out


_FIG4 = {("voc", False): "VOC Object Detection", ("coco", False): "COCO Object Detection",
         ("coco", True): "COCO Instance Segmentation"}


def detection_rows(records: List[Dict]) -> List[Dict]:
    """Per (dataset, task, schedule): the standard backbone's AP and the best robust one's."""
    groups = defaultdict(list)
    for r in records:
        if r.get("task") == "detection" and r.get("box_AP") is not None and _eps(r) is not None:
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
                         "robust_eps": _eps(b) if b else None, "robust_norm": _norm(b) if b else None,
                         "robust_arch": _arch(b) if b else None,
                         "paper_standard": float(p["standard"]) if p else None,
                         "paper_robust": float(p["robust"]) if p else None})
    return rows


def paper_imagenet(arch: str, norm: str, eps: Optional[float]) -> Optional[float]:
    """The paper's clean ImageNet top-1 of a source model: Table 3 (L2 ResNets), 4 (Linf), 3b
    (the other architectures, eps 0 and 3)."""
    pa = arch_paper_name(arch)
    if pa is None or eps is None:
        return None
    label = eps_text(norm, eps)
    table = "table4" if norm == "linf" and eps > 0 else "table3"
    for r in read_table(table):
        if r["arch"] == pa and r.get(label):
            return float(r[label])
    for r in read_table("table3b"):
        if r["eps"] == label and r.get(pa):
            return float(r[pa])
    return None


def pretrain_rows(records: List[Dict]) -> List[Dict]:
    rows = []
    for r in records:
        if r.get("task") != "pretrain":
            continue
        arch, norm, eps = _arch(r), _norm(r), _eps(r)
        rows.append({"arch": arch, "norm": norm, "eps": eps, "eps_text": eps_text(norm, eps), "dataset": r["dataset"],
                     "clean": r.get("value"), "robust": r.get("robust_top1"), "attack": r.get("robust_attack"),
                     "paper_clean": paper_imagenet(arch, norm, eps) if r["dataset"] == "imagenet" else None})
    return sorted(rows, key=lambda x: (x["arch"], x["norm"], -1 if x["eps"] is None else x["eps"]))


def unknown_eps_rows(records: List[Dict]) -> List[Dict]:
    """Classification and detection results whose source model's eps is unknown."""
    rows = []
    for r in records:
        if r.get("task") in ("classification", "detection") and _eps(r) is None:
            is_cls = r["task"] == "classification"
            rows.append({"task": r["task"], "dataset": dataset_label(r) if is_cls else r.get("dataset"),
                         "setting": r.get("mode") if is_cls else r.get("schedule"), "arch": _arch(r),
                         "source": (r.get("backbone") or {}).get("source"),
                         "metric": r.get("metric") if is_cls else "box_AP",
                         "value": r.get("value") if is_cls else r.get("box_AP"), "record": r.get("_path")})
    return rows


def dataset_rows(records: List[Dict]) -> List[Dict]:
    """The paper's Table 5 (classes, train/test sizes, metric) beside what each of rdet's
    classification datasets really was (its records' data note and metric)."""
    t5 = {r["dataset"]: r for r in read_table("table5")}
    seen = {}
    for r in records:
        if r.get("task") == "classification":
            seen.setdefault(dataset_label(r), (r["dataset"], r.get("metric"), r.get("data_note")))
    rows = []
    for label, (ds, metric, note) in sorted(seen.items()):
        p = t5.get(paper_name(label) or "", {})
        rows.append({"dataset": label, "paper_name": p.get("dataset"), "paper_classes": p.get("classes"),
                     "paper_train": p.get("train"), "paper_test": p.get("test"), "paper_metric": p.get("metric"),
                     "metric": metric, "data": note})
    return rows


def table1_rows(cls_rows: List[Dict]) -> List[Dict]:
    """Table 1 proper: per (dataset, mode), the best over architectures of rdet's standard and
    robust (L2, full-resolution) results, beside the paper's Table 1 (itself a best over
    architectures and eps)."""
    t1 = {(r["mode"], r["model"]): r for r in read_table("table1")}
    groups = defaultdict(list)
    for r in cls_rows:
        if r["norm"] == "l2" and not r["downscale"]:
            groups[(r["dataset"], r["mode"])].append(r)
    out = []
    for (ds, mode), rows in sorted(groups.items()):
        pd = paper_name(ds)
        best_of = lambda key: max((r[key].mean for r in rows if r[key] is not None), default=None)  # noqa: E731
        paper = lambda model: float(t1[(mode, model)][pd]) if pd and (mode, model) in t1 and pd in t1[(mode, model)] else None  # noqa: E501,E731
        out.append({"dataset": ds, "mode": mode, "standard": best_of("standard"), "robust": best_of("robust"),
                    "paper_standard": paper("standard"), "paper_robust": paper("robust")})
    return out
