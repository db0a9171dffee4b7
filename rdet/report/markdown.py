"""Markdown and CSV rendering of the report tables.

A paper (or RobustBench) number is printed with the row's differences from the paper's protocol
beside it (``79.61 (other protocol: feature-cache (4 views), 3 epochs)``); the "rdet - paper"
difference is printed only for rows of the paper's protocol. Differences carry their seed counts
and spreads (:func:`rdet.report.stats.diff_text`); only one outside the seed spread is bold.
"""
from __future__ import annotations

import csv
import io
from typing import Dict, List, Optional, Sequence

from rdet.report.stats import Diff, diff_text, difference, result_text
from rdet.report.tables import short_source, eps_text

_result = result_text


def _f(v: Optional[float], nd: int = 2) -> str:
    return "—" if v is None else f"{v:.{nd}f}"


def _table(head: Sequence[str], lines: List[Sequence[object]]) -> str:
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    out += ["| " + " | ".join(str(x) for x in line) + " |" for line in lines]
    return "\n".join(out) + "\n"


def paper_text(value: Optional[float], label: str, extra: str = "") -> str:
    """A published number with the row's other protocol beside it, if any."""
    if value is None:
        return "—"
    other = f" (other protocol: {label})" if label else ""
    return f"{value:.2f}{extra}{other}"


def _paper_delta(d: Optional[Diff], value: Optional[float], label: str) -> str:
    if value is None:
        return "—"
    return "— (other protocol)" if label else diff_text(d)


def mode_text(r: Dict) -> str:
    return f"{r['mode']} @{r['downscale']}px" if r.get("downscale") else r["mode"]


def _source(c) -> str:
    return short_source(c.source) if c is not None and c.source else "—"


def classification_markdown(rows: List[Dict]) -> str:
    head = ("family", "dataset", "mode", "arch", "experiment", "standard (eps 0)", "robust best",
            "best eps (norm, method)", "lr", "robust − standard", "models (standard; robust)", "paper standard",
            "paper robust (eps)",
            "paper table", "Δ standard vs paper", "Δ robust vs paper")
    lines = []
    for r in rows:
        s, b = r["standard"], r["robust"]
        paper_eps = f" ({r['paper_eps']})" if r["paper_eps"] else ""
        lines.append((r["family"], r["dataset"], mode_text(r), r["arch"], r["experiment"], _result(s), _result(b),
                      f"{eps_text(r['norm'], b.eps)} ({r['norm']}, {b.method})" if b else "—",
                      b.lr if b else (s.lr if s else "—"), diff_text(r["robust_vs_standard"]),
                      f"{_source(s)}; {_source(b)}",
                      paper_text(r["paper_standard"], r["paper_label"]),
                      paper_text(r["paper_robust"], r["paper_label"], paper_eps), r["paper_table"] or "—",
                      _paper_delta(r["delta_standard"], r["paper_standard"], r["paper_label"]),
                      _paper_delta(r["delta_robust"], r["paper_robust"], r["paper_label"])))
    return _table(head, lines)


def detection_markdown(rows: List[Dict]) -> str:
    head = ("dataset", "task", "schedule", "model", "family", "arch", "metric", "standard", "best robust (eps, method)",
            "robust − standard", "paper standard", "paper robust", "Δ standard vs paper", "Δ robust vs paper")
    lines = []
    for r in rows:
        s, b = r["standard"], r["robust"]
        which = f" ({eps_text(r['robust_norm'], r['robust_eps'])}, {r['method']})" if b is not None else ""
        if r["wiring_check"]:
            versus = "wiring check (AP < 1: not a comparison)"
        else:
            versus = diff_text(r["robust_vs_standard"])
        label = r["paper_label"]
        same = r["paper_protocol"] and not r["wiring_check"]
        d_std = difference(s, r["paper_standard"]) if same else None
        d_rob = difference(b, r["paper_robust"]) if same else None
        lines.append((r["dataset"], r["task"], r["schedule"], r["model"] or "—", r["family"], r["arch"], r["metric"],
                      _result(s), f"{_result(b)}{which}", versus,
                      paper_text(r["paper_standard"], label), paper_text(r["paper_robust"], label),
                      _det_paper_delta(d_std, r, label), _det_paper_delta(d_rob, r, label)))
    return _table(head, lines)


def _det_paper_delta(d, r: Dict, label: str) -> str:
    if r["paper_standard"] is None:
        return "—"
    if r["wiring_check"]:
        return "— (wiring check)"
    return "— (other protocol)" if label else diff_text(d)


def pretrain_markdown(rows: List[Dict]) -> str:
    head = ("family", "arch", "norm", "eps", "data", "experiment", "clean top-1", "PGD top-1 (attack)",
            "paper clean ImageNet top-1", "Δ clean vs paper")
    lines = []
    for r in rows:
        attack = f" ({r['attack']})" if r["attack"] else ""
        lines.append((r["family"], r["arch"], r["norm"], r["eps_text"], r["dataset"], r["experiment"],
                      _result(r["clean"]), f"{_result(r['robust'])}{attack}",
                      paper_text(r["paper_clean"], r["paper_label"]),
                      _paper_delta(r["delta_clean"], r["paper_clean"], r["paper_label"])))
    return _table(head, lines)


def catalog_markdown(rows: List[Dict]) -> str:
    head = ("family", "catalog model", "arch", "norm", "eps", "Salman et al. clean ImageNet top-1 (table)",
            "RobustBench id", "RobustBench clean", "RobustBench AutoAttack", "other published clean / AutoAttack",
            "used by")
    lines = []
    for r in rows:
        other = "—"
        if not r.get("robustbench_id") and r.get("published_clean") is not None:  # a catalog entry's own numbers
            source = r.get("published_source", "?")
            other = f"{_f(r['published_clean'])} / {_f(r.get('published_autoattack'))} ({source})"
        lines.append((r["family"], r["catalog"], r["arch"], r["norm"], eps_text(r["norm"], r["eps"]),
                      f"{_f(r['paper_clean'])} ({r['paper_table']})" if r.get("paper_clean") is not None else "—",
                      r.get("robustbench_id") or "—", _f(r.get("robustbench_clean")),
                      _f(r.get("robustbench_autoattack")), other, r["tasks"]))
    return _table(head, lines)


def robustness_markdown(rows: List[Dict]) -> str:
    head = ("family", "model", "data", "head", "norm", "eps", "attack", "images", "clean top-1", "robust top-1",
            "AutoAttack − PGD", "RobustBench clean / AutoAttack", "Δ robust vs RobustBench")
    lines = []
    for r in rows:
        rb = "—"
        if r["robustbench_id"]:
            other = f" (other protocol: {r['robustbench_label']})" if r["robustbench_label"] else ""
            rb = f"{r['robustbench_clean']:.2f} / {r['robustbench_autoattack']:.2f} ({r['robustbench_id']}){other}"
        delta = "—" if not r["robustbench_id"] else (
            "— (other protocol)" if r["robustbench_label"] else diff_text(r["delta_robustbench"]))
        data = f"{r['data']} (preprocessing overridden: {r['preprocessing_override']})" \
            if r.get("preprocessing_override") else r["data"]
        lines.append((r["family"], r["model"], data, r["head"], r["norm"], r["eps_text"], r["attack"],
                      r["n_images"], _result(r["clean"]), _result(r["robust"]),
                      diff_text(r["vs_pgd"]) if r["kind"] == "autoattack" else "—", rb, delta))
    return _table(head, lines)


def unknown_eps_markdown(rows: List[Dict]) -> str:
    head = ("task", "dataset", "mode / schedule", "arch", "source model", "metric", "value", "experiment", "record")
    return _table(head, [(r["task"], r["dataset"], r["setting"], r["arch"], r["source"] or "—", r["metric"],
                          _f(r["value"]), r["experiment"] or "—", r["record"] or "—") for r in rows])


def dataset_markdown(rows: List[Dict]) -> str:
    head = ("dataset", "paper's (Table 5)", "paper classes", "paper train", "paper test", "paper metric",
            "rdet metric", "rdet data")
    keys = ("dataset", "paper_name", "paper_classes", "paper_train", "paper_test", "paper_metric", "metric", "data")
    return _table(head, [tuple(r[k] or "—" for k in keys) for r in rows])


def table1_markdown(rows: List[Dict]) -> str:
    head = ("dataset", "mode", "experiment", "standard", "robust (method)", "robust − standard", "paper standard",
            "paper robust", "Δ standard vs paper", "Δ robust vs paper")
    return _table(head, [(r["dataset"], r["mode"], r["experiment"], _result(r["standard"]),
                          f"{_result(r['robust'])} ({r['method']})" if r["robust"] else "—",
                          diff_text(r["robust_vs_standard"]), paper_text(r["paper_standard"], r["paper_label"]),
                          paper_text(r["paper_robust"], r["paper_label"]),
                          _paper_delta(r["delta_standard"], r["paper_standard"], r["paper_label"]),
                          _paper_delta(r["delta_robust"], r["paper_robust"], r["paper_label"])) for r in rows])


def to_csv(rows: List[Dict]) -> str:
    """Flat CSV: results become mean/min/max/seeds/eps/lr/method/source columns, differences their
    value and verdict (outside / inside the seed spread, one seed)."""
    flat = []
    for r in rows:
        out = {}
        for k, v in r.items():
            if k.startswith("_"):
                continue
            if isinstance(v, Diff):
                out.update({k: v.value, f"{k}_verdict": v.verdict})
            elif hasattr(v, "mean"):
                out.update({f"{k}_mean": v.mean, f"{k}_min": v.lo, f"{k}_max": v.hi, f"{k}_seeds": v.n,
                            f"{k}_eps": v.eps, f"{k}_lr": v.lr, f"{k}_method": v.method, f"{k}_source": v.source})
            else:
                out[k] = v
        flat.append(out)
    keys = list(dict.fromkeys(k for r in flat for k in r))
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=keys)
    w.writeheader()
    w.writerows(flat)
    return buf.getvalue()
