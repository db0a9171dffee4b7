"""Markdown and CSV rendering of the report tables."""
from __future__ import annotations

import csv
import io
from typing import Dict, List, Optional, Sequence

from rdet.report.tables import eps_text


def _f(v: Optional[float], nd: int = 2) -> str:
    return "—" if v is None else f"{v:.{nd}f}"


def _diff(ours: Optional[float], paper: Optional[float]) -> str:
    return "—" if ours is None or paper is None else f"{ours - paper:+.2f}"


def _result(c) -> str:
    if c is None:
        return "—"
    spread = f" [{c.lo:.2f}, {c.hi:.2f}]" if c.n > 1 else ""
    return f"{c.mean:.2f}{spread} (n={c.n})"


def _table(head: Sequence[str], lines: List[Sequence[object]]) -> str:
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    out += ["| " + " | ".join(str(x) for x in line) + " |" for line in lines]
    return "\n".join(out) + "\n"


def mode_text(r: Dict) -> str:
    return f"{r['mode']} @{r['downscale']}px" if r.get("downscale") else r["mode"]


def classification_markdown(rows: List[Dict]) -> str:
    head = ("dataset", "mode", "arch", "standard (eps 0)", "robust best", "best eps", "lr", "paper standard",
            "paper robust (eps)", "paper table", "Δ standard", "Δ robust")
    lines = []
    for r in rows:
        s, b = r["standard"], r["robust"]
        paper_eps = f" ({r['paper_eps']})" if r["paper_eps"] else ""
        lines.append((r["dataset"], mode_text(r), r["arch"], _result(s), _result(b),
                      f"{eps_text(r['norm'], b.eps)} ({r['norm']})" if b else "—",
                      b.lr if b else (s.lr if s else "—"), _f(r["paper_standard"]),
                      f"{_f(r['paper_robust'])}{paper_eps}", r["paper_table"] or "—",
                      _diff(s.mean if s else None, r["paper_standard"]),
                      _diff(b.mean if b else None, r["paper_robust"])))
    return _table(head, lines)


def detection_markdown(rows: List[Dict]) -> str:
    head = ("dataset", "task", "schedule", "metric", "standard", "best robust (arch, eps)", "paper standard",
            "paper robust", "Δ standard", "Δ robust")
    lines = []
    for r in rows:
        which = (f" ({r['robust_arch']}, {eps_text(r['robust_norm'], r['robust_eps'])})"
                 if r["robust"] is not None else "")
        lines.append((r["dataset"], r["task"], r["schedule"], r["metric"], _f(r["standard"]),
                      f"{_f(r['robust'])}{which}",
                      _f(r["paper_standard"]), _f(r["paper_robust"]), _diff(r["standard"], r["paper_standard"]),
                      _diff(r["robust"], r["paper_robust"])))
    return _table(head, lines)


def pretrain_markdown(rows: List[Dict]) -> str:
    head = ("arch", "norm", "eps", "data", "clean top-1", "PGD top-1 (attack)", "paper clean ImageNet top-1")
    lines = []
    for r in rows:
        attack = f" ({r['attack']})" if r["attack"] else ""
        lines.append((r["arch"], r["norm"], r["eps_text"], r["dataset"], _f(r["clean"]), f"{_f(r['robust'])}{attack}",
                      _f(r["paper_clean"])))
    return _table(head, lines)


def unknown_eps_markdown(rows: List[Dict]) -> str:
    head = ("task", "dataset", "mode / schedule", "arch", "source model", "metric", "value", "record")
    return _table(head, [(r["task"], r["dataset"], r["setting"], r["arch"], r["source"] or "—", r["metric"],
                          _f(r["value"]), r["record"] or "—") for r in rows])


def dataset_markdown(rows: List[Dict]) -> str:
    head = ("dataset", "paper's (Table 5)", "paper classes", "paper train", "paper test", "paper metric",
            "rdet metric", "rdet data")
    keys = ("dataset", "paper_name", "paper_classes", "paper_train", "paper_test", "paper_metric", "metric", "data")
    return _table(head, [tuple(r[k] or "—" for k in keys) for r in rows])


def table1_markdown(rows: List[Dict]) -> str:
    head = ("dataset", "mode", "standard", "robust", "paper standard", "paper robust", "Δ standard", "Δ robust")
    return _table(head, [(r["dataset"], r["mode"], _f(r["standard"]), _f(r["robust"]), _f(r["paper_standard"]),
                          _f(r["paper_robust"]), _diff(r["standard"], r["paper_standard"]),
                          _diff(r["robust"], r["paper_robust"])) for r in rows])


def to_csv(rows: List[Dict]) -> str:
    """Flat CSV: ConfigResult objects become mean/min/max/eps/lr columns."""
    flat = []
    for r in rows:
        out = {}
        for k, v in r.items():
            if hasattr(v, "mean"):
                out.update({f"{k}_mean": v.mean, f"{k}_min": v.lo, f"{k}_max": v.hi, f"{k}_eps": v.eps,
                            f"{k}_lr": v.lr, f"{k}_seeds": v.n})
            else:
                out[k] = v
        flat.append(out)
    keys = list(dict.fromkeys(k for r in flat for k in r))
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=keys)
    w.writeheader()
    w.writerows(flat)
    return buf.getvalue()
