"""The answer of a selection: ranked table, validation-vs-test summary, plot against eps.

Models are ranked by their best validation score over head candidates. Two numbers are
reported side by side:

* validation-selected: the top model's chosen head, evaluated once on the test set;
* test-selected: the best test score over every (model, head) candidate, which is how the
  paper picks eps and learning rate; the gap shows how optimistic that is.

Transferability estimators (``--estimator``, :mod:`rdet.select.scoring`) add one score column and
one rank column each beside the validation ranking, and a table of how each one's ranking agrees
with the validation ranking and with the test accuracy (:mod:`rdet.select.agreement`), with its
seconds over all models.
"""
from __future__ import annotations

import csv
import io
from collections import defaultdict
from pathlib import Path
from typing import Dict, List, Optional

from rdet.core.atomic import atomic_path
from rdet.backbones import eps_label
from rdet.paper import read_table
from rdet.backbones.registry import paper_name_of as arch_paper_name
from rdet.core.records import dataset_label
from rdet.data.classification import paper_name_of as paper_name
from rdet.select.agreement import agreement
from rdet.select.heads import describe

COLUMNS = ("rank", "model", "arch", "norm", "eps", "head", "val", "test", "time_s", "cache")


def attach_estimators(rows: List[Dict], scores: Dict[str, Dict[str, Dict]]) -> List[str]:
    """Put each model's estimator scores (``scores[model][name]``, from
    :func:`rdet.select.scoring.score_record`) into its row as ``<name>`` and ``<name>_rank``
    (1: the estimator's first choice; models it could not score get no rank). Returns the
    estimator columns, ``linear`` left out (it is the ``val`` column)."""
    names = [n for n in next(iter(scores.values()), {}) if n != "linear"]
    columns = [c for n in names for c in (n, f"{n}_rank")]
    for r in rows:
        r["estimators"], r["estimator_columns"] = scores[r["model"]], columns
    for n in names:
        scored = sorted((r for r in rows if r["estimators"][n]["score"] is not None),
                        key=lambda r: (-r["estimators"][n]["score"], r["model"]))
        for r in rows:
            r[n], r[f"{n}_rank"] = r["estimators"][n]["score"], None
        for i, r in enumerate(scored, 1):
            r[f"{n}_rank"] = i
    return columns


def estimator_agreement(rows: List[Dict]) -> List[Dict]:
    """Per estimator: its seconds over every model, and tau / weighted tau / top-1 regret of its
    scores against the validation accuracy (what the selection ranks by) and against the test
    accuracy of each model's validation-chosen head."""
    if not rows or "estimators" not in rows[0]:
        return []
    out = []
    for n in rows[0]["estimators"]:
        scores = [r["estimators"][n]["score"] for r in rows]
        out.append({"estimator": n, "seconds": sum(r["estimators"][n]["time_s"] for r in rows),
                    "val": agreement(scores, [r["val"] for r in rows]),
                    "test": agreement(scores, [r["test"] for r in rows]),
                    "notes": sorted({r["estimators"][n]["note"] for r in rows
                                     if r["estimators"][n]["note"] and n != "linear"})})
    return out


def agreement_lines(rows: List[Dict]) -> List[str]:
    """The estimator table as Markdown lines (empty without estimators)."""
    stats = estimator_agreement(rows)
    if not stats:
        return []
    lines = ["| estimator | seconds (all models) | tau vs val | weighted tau vs val | regret vs val | tau vs test | "
             "regret vs test | models scored |", "|---|---|---|---|---|---|---|---|"]
    for s in stats:
        v, t = s["val"], s["test"]
        lines.append(f"| {s['estimator']} | {s['seconds']:.2f} | {v['tau']:.3f} | {v['weighted_tau']:.3f} | "
                     f"{v['regret']:.2f} | {t['tau']:.3f} | {t['regret']:.2f} | {v['n']} of {len(rows)}"
                     + (f" ({'; '.join(s['notes'])})" if s["notes"] else "") + " |")
    return lines


def ranked_rows(records: List[Dict]) -> List[Dict]:
    recs = sorted(records, key=lambda r: (-r["val_value"], r["name"]))
    rows = []
    for i, r in enumerate(recs, 1):
        b = r["backbone"]
        standard = b.get("eps") is not None and float(b["eps"]) == 0
        rows.append({"rank": i, "model": r["name"], "arch": b["arch"],
                     "norm": "-" if standard else (b.get("norm") or "?"),
                     "eps": "?" if b.get("eps") is None else eps_label(b.get("norm") or "l2", float(b["eps"])),
                     "eps_value": b.get("eps"), "head": describe(r["best"]), "val": r["val_value"],
                     "test": r["test_value"], "time_s": r["selection_time_s"],
                     "cache": "hit" if r["cache"]["hit"] else "extracted", "record": r})
    return rows


def summary(rows: List[Dict]) -> Dict:
    """Validation-selected vs test-selected (see the module docstring)."""
    top = rows[0]
    pool = [(c["test"], row, c) for row in rows for c in row["record"]["candidates"]]
    t_test, t_row, t_cand = max(pool, key=lambda x: x[0])
    return {"val_model": top["model"], "val_head": top["head"], "val_val": top["val"], "val_test": top["test"],
            "test_model": t_row["model"], "test_head": describe(t_cand), "test_test": t_test,
            "gap": t_test - top["test"]}


def _columns(rows: List[Dict]) -> tuple:
    return COLUMNS + tuple(rows[0].get("estimator_columns", ()))


def _fmt(row: Dict, key: str) -> str:
    v = row[key]
    if v is None:
        return "-"
    if key.endswith("_rank") or key in ("rank",):
        return str(v)
    if isinstance(v, float) and key not in COLUMNS:  # an estimator's score
        return f"{v:.5g}"
    if key in ("val", "test"):
        return f"{v:.2f}"
    if key == "time_s":
        return f"{v:.1f}"
    return str(v)


def write_tables(rows: List[Dict], out_dir: Path) -> Dict[str, Path]:
    """``ranking.csv`` and ``ranking.md``, each written atomically."""
    out_dir.mkdir(parents=True, exist_ok=True)
    buf = io.StringIO()
    w = csv.writer(buf)
    columns = _columns(rows)
    w.writerow(columns)
    for r in rows:
        w.writerow([_fmt(r, k) for k in columns])
    paths = {"csv": out_dir / "ranking.csv", "md": out_dir / "ranking.md"}
    with atomic_path(paths["csv"]) as tmp:
        tmp.write_text(buf.getvalue())
    with atomic_path(paths["md"]) as tmp:
        tmp.write_text(markdown(rows))
    return paths


def table_lines(rows: List[Dict], columns) -> List[str]:
    """The ranked rows as a Markdown table of ``columns`` (estimator columns included)."""
    return (["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
            + ["| " + " | ".join(_fmt(r, k) for k in columns) + " |" for r in rows])


def markdown(rows: List[Dict]) -> str:
    rec = rows[0]["record"]
    metric = "mean per class" if rec["metric"] == "mean_per_class" else "top-1"
    lines = [f"# Backbone ranking: {dataset_label(rec)}", "",
             f"Data: {rec['data_note']}.", "",
             f"Ranked by validation {metric} accuracy (%), best head per model; test accuracy of that same head "
             f"beside it. time: feature extraction + every head, seconds.", "",
             *table_lines(rows, _columns(rows))]
    s = summary(rows)
    lines += ["", f"- validation-selected: **{s['val_model']}** ({s['val_head']}): validation {s['val_val']:.2f}, "
                  f"test {s['val_test']:.2f}",
              f"- test-selected (how the paper chooses): {s['test_model']} ({s['test_head']}): test "
              f"{s['test_test']:.2f}, {s['gap']:+.2f} points above the honest choice", ""]
    agree = agreement_lines(rows)
    if agree:
        lines += ["## Transferability estimators", "",
                  "Each estimator's ranking against the validation ranking above and against the test accuracy of "
                  "each model's chosen head: Kendall tau, weighted tau (hyperbolic weights) and top-1 regret "
                  "(accuracy points lost by taking the estimator's first choice); seconds: scoring every model from "
                  "the cached features (linear: training every head).", "", *agree, ""]
    return "\n".join(lines)


def paper_curve(rec: Dict, arch: str) -> Optional[List]:
    """``[(eps, accuracy)]`` of the paper's fixed-feature Table 8 (Table 10 at 32 px) for this
    dataset and architecture; ``None`` when the paper has none (class subsets, offline sets)."""
    if rec.get("classes"):
        return None
    pd, pa = paper_name(rec["dataset"]), arch_paper_name(arch)
    if not pd or not pa:
        return None
    table = "table10_fixed_feature_32px.csv" if rec.get("downscale") == 32 else "table8"
    pts = sorted((float(r["eps"]), float(r["accuracy"])) for r in read_table(table)
                 if r["dataset"] == pd and r["arch"] == pa and r["norm"] == "l2")
    return pts or None


def plot(rows: List[Dict], out_dir: Path) -> Optional[Path]:
    """``val_vs_eps.png``: validation accuracy against eps, one line per (arch, norm); the paper's
    test accuracy (Table 8) dashed when it has this dataset. eps on a symmetric-log axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = defaultdict(list)
    for r in rows:
        if r["eps_value"] is not None and r["norm"] != "-":
            groups[(r["arch"], r["norm"])].append((float(r["eps_value"]), r["val"]))
    for r in rows:  # a standard (eps 0) model starts the curve of every norm of its architecture
        if r["norm"] == "-":
            for key in [k for k in groups if k[0] == r["arch"]] or [(r["arch"], "l2")]:
                groups[key].append((0.0, r["val"]))
    if not groups:
        return None
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    rec = rows[0]["record"]
    for (arch, norm), pts in sorted(groups.items()):
        pts.sort()
        line, = ax.plot([e for e, _ in pts], [a for _, a in pts], "o-", label=f"rdet {arch} {norm} (validation)")
        ref = paper_curve(rec, arch) if norm == "l2" else None
        if ref:
            ax.plot([e for e, _ in ref], [a for _, a in ref], "--", color=line.get_color(),
                    label=f"paper {arch} l2 (test, fixed-feature)")
    ax.set_xscale("symlog", linthresh=0.01)
    ax.set_xlabel("eps of the source model (images in [0, 1]; 0: standard training)")
    ax.set_ylabel("accuracy (%)")
    ax.set_title(f"fixed-feature transfer to {dataset_label(rec)}")
    ax.legend(fontsize=7)
    path = out_dir / "val_vs_eps.png"
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def console_table(rows: List[Dict]) -> str:
    columns = _columns(rows)
    widths = {k: max(len(k), *(len(_fmt(r, k)) for r in rows)) for k in columns}
    out = ["  ".join(k.ljust(widths[k]) for k in columns)]
    out += ["  ".join(_fmt(r, k).ljust(widths[k]) for k in columns) for r in rows]
    return "\n".join(out)


def top_line(rows: List[Dict]) -> str:
    top, rec = rows[0], rows[0]["record"]
    robustness = f"{top['norm']} eps {top['eps']}" if top["eps"] != "?" else "robustness unknown"
    return (f"best backbone for {dataset_label(rec)}: {top['model']} ({top['arch']}, {robustness}) "
            f"with {top['head']}: validation {top['val']:.2f}%, test {top['test']:.2f}%")
