"""Report section: transferability estimators, estimator x dataset x protocol, tau / regret / cost.

A record here is one estimator's agreement with one ground truth on one dataset::

    {"dataset": "DTD", "protocol": "paper fixed (Table 8)", "estimator": "logme", "tau": 0.6,
     "weighted_tau": 0.7, "regret": 0.4, "n": 10, "seconds": 3.1, "cost_ratio": 120.0}

``protocol`` names the ground truth (the selection's validation split, the paper's Table 8 / 9,
rdet's own fine-tuning in the benchmark); ``seconds`` is the estimator's cost over every model;
``cost_ratio`` (optional) how many times cheaper it is than the protocol it stands in for.
:func:`selection_records` turns a finished ``rdet select`` folder (its ``estimators.json`` and
``against_paper.json``) into such records; the benchmark writes them directly.

The section names, per dataset and protocol, whether any estimator reaches the issue's goal: a
first choice within :data:`GOAL_REGRET` points of the best model at :data:`GOAL_RATIO` x less
compute than fine-tuning every candidate.
"""
from __future__ import annotations

import json
import math
from collections import defaultdict
from pathlib import Path
from typing import Dict, List

GOAL_REGRET, GOAL_RATIO = 1.0, 50.0


def _num(v, fmt: str) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, fmt)


def selection_records(out_dir: str | Path) -> List[Dict]:
    """Records of one ``rdet select`` folder: each estimator against the validation ranking and the
    test accuracy (``estimators.json``) and, when it was run, against the paper
    (``against_paper.json``). ``cost_ratio``: the linear heads' seconds over the estimator's."""
    out = Path(out_dir)
    recs: List[Dict] = []
    est_path, paper_path = out / "estimators.json", out / "against_paper.json"
    seconds: Dict[str, float] = {}
    dataset = out.name
    if est_path.is_file():
        saved = json.loads(est_path.read_text())
        dataset = saved.get("dataset", dataset) + (f" classes {saved['classes']}" if saved.get("classes") else "")
        for a in saved["agreement"]:
            seconds[a["estimator"]] = a["seconds"]
        for a in saved["agreement"]:
            ratio = seconds.get("linear", 0) / a["seconds"] if a["seconds"] > 0 else None
            for protocol in ("val", "test"):
                recs.append({"dataset": dataset, "protocol": f"selection {protocol}", "estimator": a["estimator"],
                             **a[protocol], "seconds": a["seconds"], "cost_ratio": ratio})
    if paper_path.is_file():
        paper = json.loads(paper_path.read_text())
        for name, s in paper["stats"].items():
            recs.append({"dataset": paper["dataset"], "protocol": f"paper {paper['title']}", "estimator": name, **s,
                         "seconds": seconds.get(name)})
    return recs


def section(records: List[Dict], title: str = "Transferability estimators") -> str:
    """Markdown: one table of every record (dataset, protocol, estimator: Kendall tau, weighted
    tau, top-1 regret, seconds, cost ratio), then per dataset and protocol the estimator with the
    highest weighted tau and which estimators reach the goal."""
    if not records:
        return ""
    lines = [f"## {title}", "",
             "Kendall tau and weighted tau (hyperbolic weights) of each estimator's ranking of the backbones against "
             "the ground truth; top-1 regret: accuracy points lost by taking its first choice; seconds: scoring every "
             "backbone; cost ratio: how many times cheaper than the protocol it replaces.", "",
             "| dataset | ground truth | estimator | tau | weighted tau | regret | models | seconds | cost ratio |",
             "|---|---|---|---|---|---|---|---|---|"]
    groups = defaultdict(list)
    for r in sorted(records, key=lambda r: (r["dataset"], r["protocol"], r["estimator"])):
        groups[(r["dataset"], r["protocol"])].append(r)
        lines.append(f"| {r['dataset']} | {r['protocol']} | {r['estimator']} | {_num(r.get('tau'), '.3f')} | "
                     f"{_num(r.get('weighted_tau'), '.3f')} | {_num(r.get('regret'), '.2f')} | {r.get('n', '-')} | "
                     f"{_num(r.get('seconds'), '.2f')} | {_num(r.get('cost_ratio'), '.0f')} |")
    lines.append("")
    for (dataset, protocol), rs in groups.items():
        ranked = [r for r in rs if r.get("weighted_tau") is not None and not math.isnan(r["weighted_tau"])]
        best = max(ranked, key=lambda r: r["weighted_tau"], default=None)
        goal = [r["estimator"] for r in rs if r.get("regret") is not None and r["regret"] <= GOAL_REGRET
                and (r.get("cost_ratio") or 0) >= GOAL_RATIO]
        lines.append(f"- {dataset}, {protocol}: highest weighted tau "
                     f"{best['estimator'] + ' (' + format(best['weighted_tau'], '.3f') + ')' if best else 'none'}; "
                     f"within {GOAL_REGRET:g} point of the best at >= {GOAL_RATIO:g}x less compute: "
                     f"{', '.join(goal) if goal else 'no estimator'}")
    return "\n".join(lines) + "\n"
