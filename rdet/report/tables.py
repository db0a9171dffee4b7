"""Aggregation of result records into the paper's comparisons.

Classification (Table 1 style): records are grouped into rows by everything that defines an
experiment (:mod:`rdet.report.experiment`: architecture family and arch, dataset, mode, metric,
input scale, protocol with its views and epochs, evaluation split, ``MODEL.BN``); inside a row,
seeds are averaged per configuration (norm, backbone method, eps, lr, source model) first;
"standard" is the best such configuration at eps 0, "robust" the best at eps > 0 of one norm and
one training method (one row per norm x method); each is the mean over seeds with its min/max.
Values are each run's final epoch (the record's ``value``; ``best_value`` is not used).

The paper's numbers for the same dataset, mode, architecture and norm come from Tables 8/9 (L2,
full resolution), 10/11 (L2, ``--downscale 32``), 6 (Linf, CIFAR) and 7 (the six other
architectures, full-network, eps 0 and 3), only where the record's metric is the paper's (Table
5). They sit beside every row, but a row whose experiment is not the paper's protocol names its
differences beside them and gets no "rdet - paper" difference. Pretraining on ImageNet: the
paper's clean accuracy (Tables 3, 3b, 4). Detection (Figure 4 style): box/mask AP of the standard
backbone against the best robust one of each training method; an AP below ``NOISE_FLOOR_AP`` is a
wiring check, not a comparison.

A record whose source model's eps is unknown (``backbone.eps`` null, e.g. an evaluation of a file
without metadata) is counted as neither standard nor robust: it is listed on its own.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Dict, Iterable, List, Optional, Tuple

from rdet.core.records import dataset_label
from rdet.paper import ROBUSTBENCH_IDS, eps_column, eps_of_label, grid_eps, read_table, robustbench_entry, same_eps
from rdet.report.experiment import (PAPER_DETECTION, PAPER_PRETRAIN, UNKNOWN, arch_of, backbone, catalog_name,
                                    eps_of, experiment_text, family_of, method_deviation, method_of, norm_of,
                                    paper_deviations, pretrain_experiment, transfer_experiment)
from rdet.report.stats import ConfigResult, difference

NOISE_FLOOR_AP = 1.0  # a detector below 1 AP has learned nothing: its run checks the wiring only

_eps, _arch, _norm = eps_of, arch_of, norm_of


def eps_text(norm: Optional[str], eps: Optional[float]) -> str:
    """eps as the paper prints it (``3``, ``4/255``; 0.01569 is ``4/255``); ``unknown`` for None."""
    if eps is None:
        return "unknown"
    return f"{round(eps * 255, 2):g}/255" if norm == "linf" and eps > 0 else f"{eps:g}"


# (family, dataset label, mode, arch, downscale, metric, experiment fields)
Key = Tuple[str, str, str, str, int, str, tuple]


def short_source(source: Optional[str]) -> Optional[str]:
    """A source model's name: a catalog name as is, a file as its last two path parts."""
    if not source:
        return source
    parts = str(source).replace("\\", "/").split("/")
    return "/".join(parts[-2:])


def configurations(records: Iterable[Dict]) -> Dict[Key, List[ConfigResult]]:
    """``{row key: [ConfigResult per (norm, method, eps, lr, source model)]}`` for the
    classification records whose eps is known; seeds are what a ConfigResult averages."""
    groups = defaultdict(list)
    for r in records:
        if r.get("task") != "classification" or _eps(r) is None:
            continue
        key = (family_of(r), dataset_label(r), r["mode"], _arch(r), int(r.get("downscale") or 0),
               r.get("metric") or "top1", transfer_experiment(r))
        conf = (_norm(r), method_of(r), grid_eps(_norm(r), _eps(r)), r.get("lr"), backbone(r).get("source"))
        groups[(key, conf)].append(float(r["value"]))
    out = defaultdict(list)
    for (key, (norm, method, eps, lr, source)), vals in groups.items():
        out[key].append(ConfigResult.of(vals, eps=eps, lr=lr, norm=norm, method=method, source=source))
    return out


def _sort_key(c: ConfigResult):
    return (c.mean, -(c.lr or 0))


def best(cells: List[ConfigResult], robust: bool, norm: Optional[str] = None,
         method: Optional[str] = None) -> Optional[ConfigResult]:
    """The best configuration by mean over seeds: at eps 0, or at eps > 0 of ``norm`` and ``method``."""
    pool = [c for c in cells if (c.eps > 0) == robust and (not robust or norm is None or c.norm == norm)
            and (not robust or method is None or c.method == method)]
    return max(pool, key=_sort_key) if pool else None


def paper_name(dataset: str) -> Optional[str]:
    from rdet.data.classification import paper_name_of  # imported here: the report starts without torch

    return paper_name_of(dataset)


def arch_paper_name(arch: str) -> Optional[str]:
    from rdet.backbones.registry import paper_name_of  # imported here: the report starts without torch

    return paper_name_of(arch)


def is_paper_arch(arch: str) -> bool:
    """Whether the paper studied this architecture (its Tables 3 and 3b name it)."""
    pa = arch_paper_name(arch)
    return bool(pa) and (pa in {r["arch"] for r in read_table("table3")} or pa in read_table("table3b")[0])


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
            return [(k, float(v)) for k, v in r.items() if k not in match and v and eps_of_label(k) is not None]
    return []


def _from_table7(pd: str, pa: str) -> List[Tuple[str, float]]:
    """(eps, accuracy) of the six other architectures, full-network (Table 7: eps 0 and 3)."""
    return [(r["eps"], float(r[pa])) for r in read_table("table7") if r["dataset"] == pd and r.get(pa)]


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
    std = [a for e, a in pts if eps_of_label(e) == 0]
    rob = [(a, e) for e, a in pts if eps_of_label(e) > 0]
    top = max(rob) if rob else (None, None)
    return (std[0] if std else None), top[0], top[1], source


def _robust_kinds(cells: List[ConfigResult]) -> List[Tuple[str, Optional[str]]]:
    """The (norm, method) pairs of the robust configurations; ``[("l2", None)]`` if none."""
    return sorted({(c.norm, c.method) for c in cells if c.eps > 0}) or [("l2", None)]


def classification_rows(records: List[Dict]) -> List[Dict]:
    """One row per experiment (:func:`configurations`' key) and robust (norm, method)."""
    rows = []
    for key, cells in sorted(configurations(records).items(), key=lambda kv: str(kv[0])):
        family, ds, mode, arch, down, metric, exp = key
        for norm, method in _robust_kinds(cells):
            s, r = best(cells, robust=False), best(cells, robust=True, norm=norm, method=method)
            p_std, p_rob, p_eps, source = paper_best(ds, mode, arch, norm, down, metric)
            deviations = paper_deviations(exp) + method_deviation(method)
            same = not deviations
            rows.append({"family": family, "dataset": ds, "mode": mode, "arch": arch, "downscale": down,
                         "norm": norm, "method": method, "metric": metric, "experiment": experiment_text(exp),
                         "_experiment": exp, "standard": s, "robust": r, "robust_vs_standard": difference(r, s),
                         "paper_standard": p_std, "paper_robust": p_rob, "paper_eps": p_eps, "paper_table": source,
                         "paper_protocol": same, "paper_label": "; ".join(deviations),
                         "delta_standard": difference(s, p_std) if same else None,
                         "delta_robust": difference(r, p_rob) if same else None})
    return rows


# (dataset, mode, arch, downscale, norm, method, experiment fields)
Curve = Tuple[str, str, str, int, str, Optional[str], tuple]


def eps_curves(records: List[Dict]) -> Dict[Curve, List[Tuple[float, ConfigResult]]]:
    """``{curve: [(eps, best-over-lr-and-source ConfigResult)]}`` sorted by eps, one curve per
    experiment and robust (norm, method); the eps-0 point belongs to every curve of its experiment."""
    curves = {}
    for key, cells in configurations(records).items():
        _, ds, mode, arch, down, _, exp = key
        for norm, method in _robust_kinds(cells):
            by_eps: Dict[float, List[ConfigResult]] = defaultdict(list)
            for c in cells:
                if c.eps == 0 or (c.norm == norm and c.method == method):
                    by_eps[c.eps].append(c)
            curves[(ds, mode, arch, down, norm, method, exp)] = sorted(
                ((e, max(v, key=_sort_key)) for e, v in by_eps.items()), key=lambda p: p[0])
    return curves


def curve_deviations(key: Curve) -> List[str]:
    """How a curve's experiment differs from the paper's protocol."""
    return paper_deviations(key[6]) + method_deviation(key[5])


def paper_curves(curves: Dict[Curve, List]) -> Dict[Curve, List[Tuple[float, float]]]:
    """The paper's points for each of rdet's curves, where it has them."""
    out = {}
    for key in curves:
        ds, mode, arch, down, norm = key[:5]
        pts, _ = paper_points(ds, mode, arch, norm, down)
        if pts:
            out[key] = sorted((eps_of_label(e), a) for e, a in pts)
    return out


_FIG4 = {("voc", False): "VOC Object Detection", ("coco", False): "COCO Object Detection",
         ("coco", True): "COCO Instance Segmentation"}
_PAPER_ROI = {"voc": "Res5ROIHeads", "coco": "StandardROIHeads"}  # VOC R50-C4, COCO R50-FPN


def _det_deviations(ds_family: Optional[str], arch: str, schedule, meta_arch) -> List[str]:
    """How a detection row differs from the paper's Figure 4 setting (R50, its schedule, C4/FPN)."""
    if ds_family is None:
        return []
    out = []
    if arch != PAPER_DETECTION["arch"]:
        out.append(f"arch {arch}")
    want = PAPER_DETECTION["schedule"][ds_family]
    if schedule != want:
        out.append(f"schedule {schedule or UNKNOWN}")
    if not str(meta_arch or "").endswith(_PAPER_ROI[ds_family]):
        out.append(f"model {meta_arch or UNKNOWN}")
    return out


def detection_rows(records: List[Dict]) -> List[Dict]:
    """Per (dataset, task, schedule, model, arch) and robust training method: the standard
    backbone's AP and the best robust one's, each over seeds, with their difference; an AP below
    the noise floor makes the row a wiring check."""
    groups = defaultdict(lambda: defaultdict(list))
    for r in records:
        if r.get("task") == "detection" and r.get("box_AP") is not None and _eps(r) is not None:
            key = (r["dataset"], r.get("detection_task", "detection"), r.get("schedule"),
                   r.get("meta_architecture"), family_of(r), _arch(r))
            groups[key][(_norm(r), method_of(r), grid_eps(_norm(r), _eps(r)), backbone(r).get("source"))].append(r)
    fig4 = {(row["task"], row["metric"]): row for row in read_table("figure4")}
    rows = []
    for (ds, task, sched, meta_arch, family, arch), confs in sorted(groups.items(), key=lambda kv: str(kv[0])):
        ds_family = "voc" if "voc" in ds else "coco" if "coco" in ds else None
        paper_task = _FIG4.get((ds_family, task == "instance_segmentation"))
        deviations = _det_deviations(ds_family, arch, sched, meta_arch) if paper_task else []
        metrics = ("box_AP", "mask_AP") if task == "instance_segmentation" else ("box_AP",)
        results = {m: [ConfigResult.of([x[m] for x in recs if x.get(m) is not None], eps=eps, lr=None, norm=norm,
                                       method=method, source=src)
                       for (norm, method, eps, src), recs in confs.items() if any(x.get(m) is not None for x in recs)]
                   for m in metrics}
        kinds = sorted({(n, m) for (n, m, e, _) in confs if e > 0}) or [(None, None)]
        for norm, method in kinds:
            for metric in metrics:
                cells = results[metric]
                s, b = best(cells, robust=False), best(cells, robust=True, norm=norm, method=method)
                p = fig4.get((paper_task, metric), {})
                dev = deviations + method_deviation(method)
                wiring = any(c is not None and c.mean < NOISE_FLOOR_AP for c in (s, b))
                rows.append({"dataset": ds, "task": task, "schedule": sched, "model": meta_arch, "family": family,
                             "arch": arch, "metric": metric, "method": method, "standard": s, "robust": b,
                             "robust_eps": b.eps if b else None, "robust_norm": b.norm if b else None,
                             "robust_arch": arch if b else None,
                             "robust_vs_standard": None if wiring else difference(b, s),
                             "wiring_check": wiring,
                             "paper_standard": float(p["standard"]) if p else None,
                             "paper_robust": float(p["robust"]) if p else None,
                             "paper_protocol": bool(p) and not dev, "paper_label": "; ".join(dev) if p else ""})
    return rows


def paper_imagenet(arch: str, norm: str, eps: Optional[float]) -> Optional[float]:
    """The paper's clean ImageNet top-1 of a source model: Table 3 (L2 ResNets), 4 (Linf, its
    corrected columns), 3b (the other architectures, eps 0 and 3); eps matched with a tolerance
    (Linf as k/255)."""
    pa = arch_paper_name(arch)
    if pa is None or eps is None:
        return None
    table = "table4" if norm == "linf" and eps > 0 else "table3"
    for r in read_table(table):
        if r["arch"] == pa:
            col = eps_column([k for k in r if k != "arch"], "linf" if table == "table4" else "l2", eps)
            if col and r.get(col):
                return float(r[col])
    for r in read_table("table3b"):
        e = eps_of_label(r["eps"])
        if e is not None and same_eps("l2", e, eps) and r.get(pa):
            return float(r[pa])
    return None


def robustbench_id(name: Optional[str]) -> Optional[str]:
    """RobustBench's id of an rdet catalog model (its entry's ``robustbench_id``, or the paper's
    own Linf 4/255 models), else ``None``."""
    if not name:
        return None
    from rdet.backbones.catalog import get_entry

    entry = get_entry(name)
    return getattr(entry, "robustbench_id", None) or ROBUSTBENCH_IDS.get(name)


def published(name: Optional[str]) -> Dict[str, object]:
    """What is published about a catalog model: the paper's clean ImageNet top-1 (its Table 3/3b/4)
    and RobustBench's clean and AutoAttack accuracy, with their sources; ``{}`` for none."""
    from rdet.backbones.catalog import get_entry

    entry = get_entry(name) if name else None
    if entry is None:
        return {}
    out: Dict[str, object] = {"catalog": entry.name, "arch": entry.arch, "norm": entry.norm, "eps": entry.eps}
    clean = paper_imagenet(entry.arch, entry.norm, entry.eps)
    if clean is not None:
        out["paper_clean"] = clean
        out["paper_table"] = "Table 4" if entry.norm == "linf" and entry.eps > 0 else (
            "Table 3" if arch_paper_name(entry.arch) in {r["arch"] for r in read_table("table3")} else "Table 3b")
    for k in ("published_clean", "published_autoattack"):  # a catalog entry's own numbers
        if getattr(entry, k, None) is not None:
            out[k] = getattr(entry, k)
    if getattr(entry, "source", None):
        out["published_source"] = entry.source
    rb = robustbench_entry(robustbench_id(entry.name))
    if rb:
        out.update(robustbench_id=rb["model"], robustbench_clean=float(rb["clean_acc"]),
                   robustbench_autoattack=float(rb["autoattack_acc"]), robustbench_eps=rb["eps"])
    return out


def catalog_rows(records: List[Dict]) -> List[Dict]:
    """Each catalog model that any record used, with its published numbers and the records' tasks."""
    used = defaultdict(set)
    for r in records:
        name = catalog_name(r)
        if name:
            used[name].add(r.get("task") or "?")
    rows = []
    for name in sorted(used):
        p = published(name)
        if p:
            rows.append(dict(p, family=family_of({"backbone": {"arch": p["arch"]}}),
                             tasks=", ".join(sorted(used[name]))))
    return sorted(rows, key=lambda x: (x["family"], x["catalog"]))


def pretrain_rows(records: List[Dict]) -> List[Dict]:
    """One row per pretraining experiment (family, arch, norm, eps, method, dataset, epochs):
    clean and robust top-1 over seeds; the paper's clean ImageNet top-1 for ImageNet runs, with the
    run's differences from its protocol (90 epochs, PGD-3)."""
    groups = defaultdict(list)
    for r in records:
        if r.get("task") == "pretrain":
            exp = pretrain_experiment(r)
            groups[(family_of(r), _arch(r), _norm(r), grid_eps(_norm(r), _eps(r)), r["dataset"], exp,
                    r.get("robust_attack"))].append(r)
    rows = []
    for (family, arch, norm, eps, dataset, exp, attack), recs in groups.items():
        clean = ConfigResult.of([x["value"] for x in recs], eps=eps, lr=None, norm=norm)
        rob = [x["robust_top1"] for x in recs if x.get("robust_top1") is not None]
        method = dict(exp)["method"]
        dev = paper_deviations(exp, PAPER_PRETRAIN) + (method_deviation(method) if eps else [])
        p_clean = paper_imagenet(arch, norm, eps) if dataset == "imagenet" else None
        rows.append({"family": family, "arch": arch, "norm": norm, "eps": eps, "eps_text": eps_text(norm, eps),
                     "dataset": dataset, "experiment": experiment_text(exp), "method": method,
                     "clean": clean, "robust": ConfigResult.of(rob, eps=eps, lr=None, norm=norm) if rob else None,
                     "attack": attack, "paper_clean": p_clean, "paper_label": "; ".join(dev) if p_clean else "",
                     "delta_clean": difference(clean, p_clean) if p_clean is not None and not dev else None})
    return sorted(rows, key=lambda x: (x["family"], x["arch"], x["norm"], -1 if x["eps"] is None else x["eps"],
                                       x["experiment"]))


def unknown_eps_rows(records: List[Dict]) -> List[Dict]:
    """Classification and detection results whose source model's eps is unknown."""
    rows = []
    for r in records:
        if r.get("task") in ("classification", "detection") and _eps(r) is None:
            is_cls = r["task"] == "classification"
            rows.append({"task": r["task"], "dataset": dataset_label(r) if is_cls else r.get("dataset"),
                         "setting": r.get("mode") if is_cls else r.get("schedule"), "arch": _arch(r),
                         "source": backbone(r).get("source"),
                         "experiment": experiment_text(transfer_experiment(r)) if is_cls else "",
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
    """Table 1 proper: per (dataset, mode, experiment) and robust method, the best over the
    paper's architectures of rdet's standard and robust (L2, full-resolution) results, beside the
    paper's Table 1 (itself a best over architectures and eps); rows of another protocol carry
    its label."""
    t1 = {(r["mode"], r["model"]): r for r in read_table("table1")}
    groups = defaultdict(list)
    for r in cls_rows:
        if r["norm"] == "l2" and not r["downscale"] and is_paper_arch(r["arch"]):
            groups[(r["dataset"], r["mode"], r["_experiment"])].append(r)
    out = []
    for (ds, mode, fields), rows in sorted(groups.items(), key=lambda kv: str(kv[0])):
        pd = paper_name(ds)

        def top(key, pool):
            cands = [r[key] for r in pool if r[key] is not None]
            return max(cands, key=_sort_key) if cands else None

        def paper(model):
            row = t1.get((mode, model), {})
            return float(row[pd]) if pd and row.get(pd) else None

        s = top("standard", rows)
        for method in sorted({r["method"] for r in rows if r["robust"] is not None}) or [None]:
            b = top("robust", [r for r in rows if r["method"] == method])
            label = "; ".join(paper_deviations(fields) + method_deviation(method))
            same = not label
            out.append({"dataset": ds, "mode": mode, "experiment": experiment_text(fields), "method": method,
                        "standard": s, "robust": b,
                        "robust_vs_standard": difference(b, s), "paper_standard": paper("standard"),
                        "paper_robust": paper("robust"), "paper_label": label,
                        "delta_standard": difference(s, paper("standard")) if same else None,
                        "delta_robust": difference(b, paper("robust")) if same else None})
    return out
