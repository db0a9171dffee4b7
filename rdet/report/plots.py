"""PNG plots (matplotlib, Agg backend: no display needed).

Every rdet point carries whiskers over seeds (min to max; none for one seed, which the legend
says); a legend lists only series that have data; a paper series drawn beside rdet runs of
another protocol says so in its label; detection bars below the noise floor are hatched and
labelled a wiring check. ``*_figure`` build the figure (tests inspect it), ``plot_*`` save it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional, Tuple

from rdet.core.atomic import atomic_path
from rdet.paper import same_eps
from rdet.report.experiment import experiment_text
from rdet.report.tables import curve_deviations, eps_text


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    return path


def _whiskers(results) -> Tuple[List[float], List[float]]:
    """(below, above) the mean: min and max over seeds."""
    return [c.mean - c.lo for c in results], [c.hi - c.mean for c in results]


def _x_near(x_of: Dict[float, int], norm: str, eps: float) -> Optional[int]:
    """The x position of rdet's eps that is the paper's ``eps`` (Linf as k/255, L2 relatively)."""
    return next((x for e, x in x_of.items() if same_eps(norm, e, eps)), None)


def eps_figure(ds: str, curves: Dict, paper: Dict):
    """Accuracy vs eps for every curve of dataset ``ds`` (``tables.eps_curves``), with whiskers;
    the paper's curve for the same setting dashed, where it shares eps with rdet's."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    keys = sorted((k for k in curves if k[0] == ds), key=str)
    all_eps = sorted({round(e, 8) for k in keys for e, _ in curves[k]})
    x_of = {e: i for i, e in enumerate(all_eps)}
    norms = {k[4] for k in keys}
    ax.set_xticks(range(len(all_eps)), [eps_text(next(iter(norms)) if len(norms) == 1 else None, e)
                                        if e else "0" for e in all_eps])
    papers: Dict[tuple, List] = {}  # one paper curve per (mode, arch, scale, norm), drawn once
    for key in keys:
        _, mode, arch, down, norm, method, exp = key
        pts = curves[key]
        setting = f"{mode}{f' @{down}px' if down else ''} {arch} {norm} {method}"
        seeds = sorted({c.n for _, c in pts})
        xs = [x_of[round(e, 8)] for e, _ in pts]
        below, above = _whiskers([c for _, c in pts])
        ax.errorbar(xs, [c.mean for _, c in pts], yerr=[below, above] if max(seeds) > 1 else None,
                    fmt="o-", capsize=3,
                    label=f"rdet {setting}; {experiment_text(exp)} (seeds {'/'.join(map(str, seeds))})")
        ref = paper.get(key)
        if ref:
            papers.setdefault((mode, arch, down, norm), [ref, []])[1].append(curve_deviations(key))
    for (mode, arch, down, norm), (ref, devs) in sorted(papers.items(), key=str):
        common = [(x, a) for e, a in ref for x in [_x_near(x_of, norm, e)] if x is not None]
        if not common:
            continue
        if all(devs):  # no rdet curve of this setting follows the paper's protocol
            other = sorted({", ".join(d) for d in devs})
            label = f"paper {mode} {arch} {norm} (rdet beside it: other protocol: {'; '.join(other)})"
        else:
            label = f"paper {mode}{f' @{down}px' if down else ''} {arch} {norm}"
        ax.plot([c[0] for c in common], [c[1] for c in common], "k--", marker="x", alpha=0.7, label=label)
    ax.set_xlabel("eps (robustness of the source model)" + (f", {next(iter(norms))}" if len(norms) == 1 else ""))
    ax.set_ylabel("transfer accuracy (%); whiskers: min-max over seeds")
    ax.set_title(ds)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=6, loc="best")
    return fig


def plot_eps_curves(curves: Dict, paper: Dict, out_dir: Path) -> List[Path]:
    """One figure per dataset (:func:`eps_figure`), ``eps_curve_<dataset>.png``."""
    plt = _plt()
    paths = []
    for ds in sorted({k[0] for k in curves}):
        fig = eps_figure(ds, curves, paper)
        paths.append(_save(fig, out_dir / f"eps_curve_{ds}.png"))
        plt.close(fig)
    return paths


def detection_figure(rows: List[Dict]) -> Optional[object]:
    """Figure 4 style: grouped bars, standard vs best robust, rdet (whiskers over seeds) and the
    paper where it has the setting; only series with data appear (and in the legend)."""
    rows = [r for r in rows if r["standard"] is not None or r["robust"] is not None]
    if not rows:
        return None
    plt = _plt()
    series = [("rdet standard", "standard"), ("rdet robust", "robust"),
              ("paper standard", "paper_standard"), ("paper robust", "paper_robust")]
    series = [(name, key) for name, key in series if any(r[key] is not None for r in rows)]
    fig, ax = plt.subplots(figsize=(max(5.0, 2.6 * len(rows)), 4.0))
    labels = []
    for r in rows:
        method = f", robust: {r['method']}" if r.get("method") else ""
        note = "\nWIRING CHECK (AP < 1)" if r["wiring_check"] else (
            "\npaper: other protocol" if r["paper_standard"] is not None and r["paper_label"] else "")
        labels.append(f"{r['dataset']} {r['arch']}\n{r['metric']}, {r['schedule']}{method}{note}")
    w = 0.8 / max(len(series), 1)
    for i, (name, key) in enumerate(series):
        xs = [j + (i - (len(series) - 1) / 2) * w for j, r in enumerate(rows) if r[key] is not None]
        vals = [r[key] for r in rows if r[key] is not None]
        if key in ("standard", "robust"):
            means = [c.mean for c in vals]
            hatch = ["//" if r["wiring_check"] else "" for r in rows if r[key] is not None]
            yerr = list(_whiskers(vals)) if any(c.n > 1 for c in vals) else None  # one seed: no whisker
            bars = ax.bar(xs, means, w, yerr=yerr, capsize=3,
                          label=f"{name} (seeds {'/'.join(map(str, sorted({c.n for c in vals})))})")
            for bar, h in zip(bars, hatch):
                if h:
                    bar.set_hatch(h)
                    bar.set_alpha(0.5)
        else:
            ax.bar(xs, vals, w, label=name, alpha=0.6)
    ax.set_xticks(range(len(rows)), labels, fontsize=7)
    ax.set_ylabel("AP; whiskers: min-max over seeds")
    if any(r["wiring_check"] for r in rows):
        ax.set_title("hatched: below the noise floor (AP < 1): a wiring check, not a comparison", fontsize=8)
    ax.legend(fontsize=7)
    return fig


def plot_detection(rows: List[Dict], out_dir: Path) -> List[Path]:
    fig = detection_figure(rows)
    if fig is None:
        return []
    path = _save(fig, out_dir / "detection_ap.png")
    _plt().close(fig)
    return [path]
