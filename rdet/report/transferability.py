"""Report section: transferability estimators, estimator x dataset x protocol, tau / regret / cost.

A record here is one estimator's agreement with one ground truth on one dataset::

    {"dataset": "DTD", "protocol": "paper fixed (Table 8)", "estimator": "logme", "tau": 0.6,
     "weighted_tau": 0.7, "regret": 0.4, "n": 10, "seconds": 3.1, "cost_ratio": 120.0}

``protocol`` names the ground truth (the selection's validation split, the paper's Table 8 / 9,
rdet's own fine-tuning in the benchmark); ``seconds`` is the estimator's cost over every model;
``cost_ratio`` (optional) how many times cheaper it is than the protocol it stands in for.
:func:`selection_records` turns a finished ``rdet select`` folder (its ``estimators.json`` and
``against_paper.json``) into such records, :func:`study_records` a study's ``transferability``
cells (against the selection and the study's own fine-tuning); the benchmark writes them directly.

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
             "the ground truth; top-1 regret: accuracy points lost by taking its first choice; seconds: the estimator's cost over every "
             "backbone (in a study or the benchmark, feature extraction included; after `rdet select`, scoring its "
             "cached features); cost ratio: how many times cheaper than the protocol it replaces.", "",
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


def _target(r: Dict) -> tuple:
    """What a record's data is, for matching a study's estimator cells to its classification cells."""
    return (r.get("dataset"), tuple(int(c) for c in r.get("classes") or ()), int(r.get("downscale") or 0))


def _source(r: Dict) -> str:
    return str((r.get("backbone") or {}).get("source"))


def _fine_tuned(records: List[Dict], target: tuple, sources: List[str]):
    """Per setting (mode, protocol, epochs, recipe: never pooled): ``({source: accuracy}, seconds,
    seed counts)`` of the classification cells on ``target``: accuracy = the best learning rate's
    mean over seeds (the paper's protocol), seconds = every cell's wall time (fine-tuning every
    candidate at every lr and seed)."""
    by_setting: Dict[tuple, Dict] = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    seconds: Dict[tuple, float] = defaultdict(float)
    for r in records:
        if r.get("task") == "classification" and _target(r) == target and _source(r) in sources \
                and isinstance(r.get("value"), (int, float)):
            setting = (r.get("mode"), r.get("protocol"), r.get("epochs"), (r.get("recipe") or {}).get("name"))
            by_setting[setting][_source(r)][r.get("lr")].append(float(r["value"]))
            seconds[setting] += float(r.get("wall_time_s") or 0.0)
    out = {}
    for setting, per_source in by_setting.items():
        acc = {s: max(sum(v) / len(v) for v in per_lr.values()) for s, per_lr in per_source.items()}
        seeds = sorted({len(v) for per_lr in per_source.values() for v in per_lr.values()})
        out[setting] = (acc, seconds[setting], seeds)
    return out


def _groups(records: List[Dict]) -> List[tuple]:
    """``[((target label, data), records)]`` of a study's ``transferability`` cells, one per target."""
    groups: Dict[tuple, List[Dict]] = defaultdict(list)
    for r in records:
        if r.get("task") == "transferability" and r.get("estimators"):
            groups[(r.get("target"), _target(r))].append(r)
    return sorted(((k, sorted(v, key=lambda r: r["name"])) for k, v in groups.items()), key=lambda kv: str(kv[0]))


def study_records(records: List[Dict]) -> List[Dict]:
    """Agreement records (the :func:`section` layout) of a study's ``transferability`` cells: per
    target and estimator, against the selection's validation and test accuracy and against the
    study's fine-tuned accuracy on the same data (fixed and full, when the study has them).
    ``seconds``: extraction + scoring over every backbone (``linear``: extraction + heads);
    ``cost_ratio``: fine-tuning every candidate's seconds / the estimator's."""
    from rdet.select.agreement import agreement

    out: List[Dict] = []
    for (label, target), recs in _groups(records):
        sources = [_source(r) for r in recs]
        truths = {"selection val": ([r["val_value"] for r in recs], None),
                  "selection test": ([r["test_value"] for r in recs], None)}
        settings = _fine_tuned(records, target, sources)
        for (mode, protocol, epochs, recipe), (acc, secs, seeds) in sorted(settings.items(), key=str):
            seeds_txt = "/".join(str(s) for s in seeds)
            # the mode alone names it unless the study fine-tuned in several ways: then each is its own truth
            detail = "" if sum(k[0] == mode for k in settings) == 1 else f"{protocol}, {epochs} epochs, {recipe}; "
            truths[f"fine-tuned {mode} ({detail}{seeds_txt} seed{'s' if seeds != [1] else ''})"] = (
                [acc.get(s) for s in sources], secs)
        for name in recs[0]["estimators"]:
            scores = [r["estimators"].get(name, {}).get("score") for r in recs]
            seconds = sum(float(r["estimators"].get(name, {}).get("time_s") or 0) + float(r["extract_time_s"])
                          for r in recs)
            for protocol, (truth, protocol_s) in truths.items():
                out.append({"dataset": label, "protocol": protocol, "estimator": name, **agreement(scores, truth),
                            "seconds": seconds,
                            "cost_ratio": protocol_s / seconds if protocol_s and seconds > 0 else None})
    return out


def study_rankings(records: List[Dict]) -> List[str]:
    """Per target of a study's ``transferability`` cells: the backbone ranking by validation
    accuracy with every estimator's score and rank beside it (Markdown)."""
    from rdet.select.ranking import attach_estimators, ranked_rows, table_lines

    parts = []
    for (label, _), recs in _groups(records):
        rows = ranked_rows(recs)
        attach_estimators(rows, {r["name"]: r["estimators"] for r in recs})
        columns = ("rank", "model", "arch", "norm", "eps", "val", "test") + tuple(rows[0]["estimator_columns"])
        parts += [f"## Backbone ranking for {label} with transferability estimators", "",
                  f"Data: {recs[0].get('data_note')}. val / test: the best validation-split head; each estimator's "
                  f"score and rank (1: its first choice) from the same cached features.", "",
                  *table_lines(rows, columns), ""]
    return parts
