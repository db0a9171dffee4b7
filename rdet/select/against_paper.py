"""``--against-paper fixed|full``: the selection's rankings scored against the paper's own numbers.

The paper's Tables 8 (fixed-feature) and 9 (full-network) -- 10 and 11 at ``DATA.DOWNSCALE 32``
(its appendix A.3) -- give the fine-tuned test accuracy of 40 released L2 models (ResNet-18,
ResNet-50, WRN-50-2, WRN-50-4 at 10 eps each) on its 12 datasets: a ground truth of transfer
accuracy for exactly the backbones ``rdet select`` ranks. Each model of the selection is looked
up by (dataset, architecture, norm, eps); each ranking (the validation heads, ``linear``, and
every estimator) is then set against those accuracies with Kendall tau, weighted tau and top-1
regret (:mod:`rdet.select.agreement`).

Nothing is dropped silently: the result says how many of the table's models for this dataset
were matched, and names every model the table lacks with the reason (another norm, an
architecture or eps the paper did not train). A dataset the tables lack (an offline set, a class
subset, another downscale) is refused before any work (:func:`check_dataset`).
"""
from __future__ import annotations

from typing import Dict, List, Optional

from rdet.backbones.registry import paper_name_of as arch_paper_name
from rdet.core.errors import ConfigError
from rdet.data.classification import paper_name_of
from rdet.paper import read_table, same_eps
from rdet.select.agreement import agreement

TABLES = {("fixed", 0): "table8", ("full", 0): "table9", ("fixed", 32): "table10", ("full", 32): "table11"}
TABLE_TITLES = {"table8": "Table 8 (fixed-feature)", "table9": "Table 9 (full-network)",
                "table10": "Table 10 (fixed-feature, 32 px)", "table11": "Table 11 (full-network, 32 px)"}


def table_of(mode: str, downscale: int) -> str:
    try:
        return TABLES[(mode, int(downscale))]
    except KeyError:
        raise ConfigError(f"--against-paper {mode}: the paper has tables at the full resolution and at DATA.DOWNSCALE "
                          f"32 only, not at DATA.DOWNSCALE {downscale}") from None


def check_dataset(cfg, mode: str) -> str:
    """The table name for this selection; a one-line :class:`ConfigError` when the paper has no
    numbers for its data (checked before any work)."""
    table = table_of(mode, cfg.DATA.DOWNSCALE)
    paper = paper_name_of(cfg.DATA.DATASET)
    names = sorted({r["dataset"] for r in read_table(table)})
    if paper is None or paper not in names:
        raise ConfigError(f"--against-paper: {cfg.DATA.DATASET} is not one of the paper's datasets in "
                          f"{TABLE_TITLES[table]} ({', '.join(names)})")
    if len(cfg.DATA.CLASSES):
        raise ConfigError(f"--against-paper: DATA.CLASSES selects a subset of {paper}; the paper's numbers are for "
                          f"all its classes")
    return table


def _paper_row(rows: List[Dict[str, str]], dataset: str, arch: str, norm: Optional[str], eps) -> Optional[Dict]:
    standard = eps is not None and float(eps) == 0  # eps 0: a standard model, whatever norm it is filed under
    for r in rows:
        if r["dataset"] != dataset or r["arch"] != arch or eps is None:
            continue
        if (standard and float(r["eps"]) == 0) or (r["norm"] == norm and same_eps(norm, float(r["eps"]), float(eps))):
            return r
    return None


def _why_missing(rows, dataset: str, rec: Dict) -> str:
    b = rec["backbone"]
    arch = arch_paper_name(b["arch"])
    if arch is None or not any(r["arch"] == arch for r in rows):
        return f"architecture {b['arch']} is not in the table"
    if b.get("eps") is None:
        return "its eps is unknown (not a catalog model, and the file does not say)"
    if not any(r["norm"] == b.get("norm") for r in rows):
        return f"norm {b.get('norm')} is not in the table (L2 models only)"
    return f"{b.get('norm')} eps {b['eps']:g} of {arch} is not in the table"


def against_paper(rows: List[Dict], cfg, mode: str) -> Dict:
    """The comparison for ranked ``rows`` (:func:`rdet.select.ranking.ranked_rows`, estimator
    columns attached or not): matched paper accuracies, the models the table lacks (named, with
    the reason), and per ranking ``{tau, weighted_tau, regret, n}`` against the paper."""
    table = check_dataset(cfg, mode)
    dataset = paper_name_of(cfg.DATA.DATASET)
    paper_rows = [r for r in read_table(table) if r["dataset"] == dataset]
    matched, missing = {}, []
    for row in rows:
        b = row["record"]["backbone"]
        hit = _paper_row(paper_rows, dataset, arch_paper_name(b["arch"]), b.get("norm"), b.get("eps"))
        if hit is None:
            missing.append({"model": row["model"], "why": _why_missing(paper_rows, dataset, row["record"])})
        else:
            matched[row["model"]] = float(hit["accuracy"])
    archs = sorted({arch_paper_name(row["record"]["backbone"]["arch"]) for row in rows} & {r["arch"] for r in paper_rows})
    table_models = [r for r in paper_rows if r["arch"] in archs]
    names = ["linear"] + [n for n in (rows[0].get("estimators") or {}) if n != "linear"]
    truth = [matched.get(r["model"]) for r in rows]
    stats = {}
    for n in names:
        scores = [r["val"] if n == "linear" else r["estimators"][n]["score"] for r in rows]
        stats[n] = agreement(scores, truth)
    best = max(matched, key=matched.get) if matched else None
    return {"table": table, "title": TABLE_TITLES[table], "dataset": dataset, "matched": matched, "missing": missing,
            "table_models": len(table_models), "table_archs": archs, "best_model": best, "stats": stats}


def summary_lines(result: Dict, n_models: int) -> List[str]:
    """The comparison as Markdown lines: what was matched, what the table lacks, one row per ranking."""
    r = result
    lines = [f"Ground truth: the paper's {r['title']} accuracy on {r['dataset']}. Matched {len(r['matched'])} of the "
             f"paper's {r['table_models']} {'/'.join(r['table_archs'])} models for {r['dataset']} "
             f"({len(r['matched'])} of the {n_models} models given)."]
    lines += [f"- not in the paper's table: {m['model']}: {m['why']}" for m in r["missing"]]
    if r["best_model"]:
        best = r["best_model"]
        lines.append(f"- the paper's best of the matched models: {best} ({r['matched'][best]:.2f}%)")
    lines += ["", "| ranking | Kendall tau | weighted tau | top-1 regret (points) | models compared |",
              "|---|---|---|---|---|"]
    for name, s in r["stats"].items():
        lines.append(f"| {name} | {s['tau']:.3f} | {s['weighted_tau']:.3f} | {s['regret']:.2f} | {s['n']} |")
    return lines
