"""Robust accuracy (``rdet.evaluate`` records): PGD and AutoAttack side by side, never pooled.

One row per (model, data, norm, eps, attack with its settings): PGD-k with its step size and
restarts, AutoAttack with its version and budget are different attacks and never share a row;
records of the same row (seeds) are averaged and shown with their spread. An AutoAttack row
shows its difference from the strongest PGD row of the same model, data and eps. For catalog
models that RobustBench lists, its published clean and AutoAttack accuracy sit beside each row;
a row measured otherwise than RobustBench (not its 5,000-image ImageNet subset, another norm or
eps, another attack or a reduced budget) names those differences and gets no difference to them.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Dict, List, Tuple

from rdet.paper import grid_eps, same_eps
from rdet.report.experiment import arch_of, catalog_name, family_of
from rdet.report.stats import ConfigResult, difference
from rdet.report.tables import dataset_label, eps_text, published, short_source

ROBUSTBENCH = {"dataset": "imagenet", "subset": "robustbench", "n_images": 5000, "norm": "linf", "eps": 4 / 255}


def attack_entries(rec: Dict) -> List[Dict]:
    """The record's ``attacks``; an older record's PGD results (``results`` + ``attack``) as entries."""
    if rec.get("attacks"):
        return list(rec["attacks"])
    a = rec.get("attack") or {}
    return [{"attack": "pgd", "norm": a.get("norm"), "eps": r["eps"], "steps": a.get("steps"),
             "restarts": a.get("restarts"), "step_size": None, "robust_top1": r["top1"]}
            for r in rec.get("results", []) if r.get("eps")]


def attack_text(e: Dict) -> str:
    """``PGD-20 (step 0.00157, 1 restart)``, ``AutoAttack standard`` (``, reduced budget ...``)."""
    if e.get("attack") == "pgd":
        step = f"step {e['step_size']:.3g}, " if e.get("step_size") else ""
        restarts = e.get("restarts")
        return f"PGD-{e.get('steps', '?')} ({step}{restarts} restart{'s' if restarts != 1 else ''})"
    if e.get("attack") == "autoattack":
        budget = "" if e.get("standard_budget", True) else f", reduced budget ({e.get('n_iter')} iterations)"
        targets = f", {e['n_target_classes']} target classes" if e.get("n_target_classes") else ""  # < 10 classes
        return f"AutoAttack {e.get('version', '?')}{targets}{budget}"
    return str(e.get("attack"))


def _data_text(rec: Dict) -> str:
    """``imagenet (robustbench subset)``, ``fashion_mnist[0-4]``."""
    subset = f" ({rec['subset']} subset)" if rec.get("subset") else ""
    return f"{dataset_label(dict(rec, dataset=rec.get('dataset') or '?'))}{subset}"


def _rb_deviations(rec: Dict, e: Dict, n_images: int) -> List[str]:
    out = []
    if rec.get("dataset") != ROBUSTBENCH["dataset"] or rec.get("subset") != ROBUSTBENCH["subset"]:
        out.append(f"data {_data_text(rec)}")
    elif n_images != ROBUSTBENCH["n_images"]:
        out.append(f"{n_images} images")
    if e.get("norm") != ROBUSTBENCH["norm"] or not same_eps("linf", float(e.get("eps") or 0), ROBUSTBENCH["eps"]):
        out.append(f"{e.get('norm')} eps {eps_text(e.get('norm'), e.get('eps'))}")
    if e.get("attack") != "autoattack" or e.get("version") != "standard" or not e.get("standard_budget", True) \
            or e.get("n_target_classes"):
        out.append(f"attack {attack_text(e)}")
    if (rec.get("head") or {}).get("source", "checkpoint") != "checkpoint":
        out.append("head fitted on the training split")
    return out


def robustness_rows(records: List[Dict]) -> List[Dict]:
    """Rows of :mod:`rdet.report.robustness` (see the module docstring)."""
    groups: Dict[Tuple, List[Tuple[float, float]]] = defaultdict(list)
    meta: Dict[Tuple, Tuple[Dict, Dict]] = {}
    for r in records:
        if r.get("task") != "robustness":
            continue
        model = catalog_name(r) or short_source((r.get("backbone") or {}).get("source") or r.get("weights"))
        head = (r.get("head") or {}).get("source", "checkpoint")
        for e in attack_entries(r):
            n = int(e.get("n_images") or r.get("n_images") or 0)
            key = (family_of(r), model, arch_of(r), _data_text(r), head, e.get("norm"),
                   grid_eps(e.get("norm"), float(e["eps"])),
                   attack_text(e), n)
            clean = r.get("clean_top1")
            if clean is None:
                clean = next((x["top1"] for x in r.get("results", []) if x.get("eps") == 0), None)
            groups[key].append((clean, float(e["robust_top1"])))
            meta.setdefault(key, (r, e))
    rows = []
    for key, vals in groups.items():
        family, model, arch, data, head, norm, eps, attack, n = key
        rec, e = meta[key]
        clean = [c for c, _ in vals if c is not None]
        rows.append({"family": family, "model": model, "arch": arch, "data": data, "head": head, "norm": norm,
                     "eps": eps, "eps_text": eps_text(norm, eps), "attack": attack, "kind": e.get("attack"),
                     "n_images": n, "clean": ConfigResult.of(clean, eps=0.0, lr=None) if clean else None,
                     "robust": ConfigResult.of([v for _, v in vals], eps=eps, lr=None, norm=norm),
                     "catalog": catalog_name(rec), "_rec": rec, "_entry": e})
    _add_comparisons(rows)
    for r in rows:
        del r["_rec"], r["_entry"]
    return sorted(rows, key=lambda x: (x["family"], str(x["model"]), x["data"], x["norm"] or "", x["eps"],
                                       x["kind"] != "pgd", x["attack"]))


def _add_comparisons(rows: List[Dict]) -> None:
    """AutoAttack vs the strongest PGD of the same model/data/eps; RobustBench's numbers."""
    pgd: Dict[Tuple, ConfigResult] = {}
    for r in rows:
        k = (r["model"], r["data"], r["head"], r["norm"], r["eps"], r["n_images"])
        if r["kind"] == "pgd" and (k not in pgd or r["robust"].mean < pgd[k].mean):
            pgd[k] = r["robust"]
    for r in rows:
        k = (r["model"], r["data"], r["head"], r["norm"], r["eps"], r["n_images"])
        r["vs_pgd"] = difference(r["robust"], pgd.get(k)) if r["kind"] == "autoattack" else None
        p = published(r["catalog"])
        r["robustbench_id"] = p.get("robustbench_id")
        r["robustbench_clean"] = p.get("robustbench_clean")
        r["robustbench_autoattack"] = p.get("robustbench_autoattack")
        dev = _rb_deviations(r["_rec"], r["_entry"], r["n_images"]) if r["robustbench_id"] else []
        r["robustbench_label"] = "; ".join(dev)
        same = bool(r["robustbench_id"]) and not dev
        r["delta_robustbench"] = difference(r["robust"], r["robustbench_autoattack"]) if same else None
        r["delta_robustbench_clean"] = difference(r["clean"], r["robustbench_clean"]) if same and r["clean"] else None

