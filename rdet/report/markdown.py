"""Markdown and CSV rendering of the report tables."""
from __future__ import annotations

import csv
import io
from typing import Dict, List, Optional

from rdet.backbones.catalog import eps_label


def _f(v: Optional[float], nd: int = 2) -> str:
    return "—" if v is None else f"{v:.{nd}f}"


def _diff(ours: Optional[float], paper: Optional[float]) -> str:
    return "—" if ours is None or paper is None else f"{ours - paper:+.2f}"


def _cell(c) -> str:
    if c is None:
        return "—"
    spread = f" [{c.lo:.2f}, {c.hi:.2f}]" if c.n > 1 else ""
    return f"{c.mean:.2f}{spread} (n={c.n})"


def classification_markdown(rows: List[Dict]) -> str:
    head = ("| dataset | mode | arch | standard (eps 0) | robust best | best eps | lr | paper standard | paper robust "
            "(eps) | Δ standard | Δ robust |\n|---|---|---|---|---|---|---|---|---|---|---|\n")
    lines = []
    for r in rows:
        s, b = r["standard"], r["robust"]
        paper_eps = f" ({r['paper_eps']})" if r["paper_eps"] else ""
        lines.append(
            f"| {r['dataset']} | {r['mode']} | {r['arch']} | {_cell(s)} | {_cell(b)} | "
            f"{eps_label(b.norm or 'l2', b.eps) if b else '—'} | {b.lr if b else (s.lr if s else '—')} | "
            f"{_f(r['paper_standard'])} | {_f(r['paper_robust'])}{paper_eps} | "
            f"{_diff(s.mean if s else None, r['paper_standard'])} | {_diff(b.mean if b else None, r['paper_robust'])} |")
    return head + "\n".join(lines) + "\n"


def detection_markdown(rows: List[Dict]) -> str:
    head = ("| dataset | task | schedule | metric | standard | best robust (arch, eps) | paper standard | "
            "paper robust | Δ standard | Δ robust |\n|---|---|---|---|---|---|---|---|---|---|\n")
    lines = []
    for r in rows:
        which = f" ({r['robust_arch']}, {r['robust_eps']:g})" if r["robust"] is not None else ""
        lines.append(f"| {r['dataset']} | {r['task']} | {r['schedule']} | {r['metric']} | {_f(r['standard'])} | "
                     f"{_f(r['robust'])}{which} | {_f(r['paper_standard'])} | {_f(r['paper_robust'])} | "
                     f"{_diff(r['standard'], r['paper_standard'])} | {_diff(r['robust'], r['paper_robust'])} |")
    return head + "\n".join(lines) + "\n"


def pretrain_markdown(rows: List[Dict]) -> str:
    head = "| arch | norm | eps | data | clean top-1 | PGD top-1 (attack) |\n|---|---|---|---|---|---|\n"
    lines = []
    for r in rows:
        attack = f" ({r['attack']})" if r["attack"] else ""
        lines.append(f"| {r['arch']} | {r['norm']} | {eps_label(r['norm'] or 'l2', r['eps'])} | {r['dataset']} | "
                     f"{_f(r['clean'])} | {_f(r['robust'])}{attack} |")
    return head + "\n".join(lines) + "\n"


def to_csv(rows: List[Dict]) -> str:
    """Flat CSV: Cell objects become mean/min/max/eps/lr columns."""
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


def table1_markdown(rows: List[Dict]) -> str:
    head = ("| dataset | mode | standard | robust | paper standard | paper robust | Δ standard | Δ robust |\n"
            "|---|---|---|---|---|---|---|---|\n")
    return head + "\n".join(
        f"| {r['dataset']} | {r['mode']} | {_f(r['standard'])} | {_f(r['robust'])} | {_f(r['paper_standard'])} | "
        f"{_f(r['paper_robust'])} | {_diff(r['standard'], r['paper_standard'])} | "
        f"{_diff(r['robust'], r['paper_robust'])} |" for r in rows) + "\n"
