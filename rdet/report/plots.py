"""PNG plots (matplotlib, Agg backend: no display needed)."""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Tuple

from rdet.core.atomic import atomic_path
from rdet.report.tables import eps_text


def _save(fig, path: Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    return path


def plot_eps_curves(curves: Dict[Tuple[str, str, str, int, str], List[Tuple[float, float]]], paper: Dict,
                    out_dir: Path) -> List[Path]:
    """One figure per dataset: accuracy vs eps for each (mode, arch, scale, norm) curve of
    ``tables.eps_curves``; the paper's curve for the same setting dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    for ds in sorted({k[0] for k in curves}):
        fig, ax = plt.subplots(figsize=(5, 3.5))
        for key, pts in sorted(curves.items()):
            d, mode, arch, down, norm = key
            if d != ds:
                continue
            setting = f"{mode}{f' @{down}px' if down else ''} {arch} {norm}"
            xs = list(range(len(pts)))
            line, = ax.plot(xs, [a for _, a in pts], "o-", label=f"rdet {setting}")
            ax.set_xticks(xs, [eps_text(norm, e) for e, _ in pts])
            ref = paper.get(key)
            if ref:
                eps_to_x = {round(e, 8): i for i, (e, _) in enumerate(pts)}
                common = [(eps_to_x[round(e, 8)], a) for e, a in ref if round(e, 8) in eps_to_x]
                if common:
                    ax.plot([c[0] for c in common], [c[1] for c in common], "--", color=line.get_color(),
                            label=f"paper {setting}")
        ax.set_xlabel("eps (robustness of the source model)")
        ax.set_ylabel("transfer accuracy (%)")
        ax.set_title(ds)
        ax.legend(fontsize=7)
        paths.append(_save(fig, out_dir / f"eps_curve_{ds}.png"))
        plt.close(fig)
    return paths


def plot_detection(rows: List[Dict], out_dir: Path) -> List[Path]:
    """Figure 4 style: grouped bars, standard vs best robust, rdet and (where known) the paper."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in rows if r["standard"] is not None or r["robust"] is not None]
    if not rows:
        return []
    fig, ax = plt.subplots(figsize=(max(4, 1.8 * len(rows)), 3.5))
    labels = [f"{r['dataset']}\n{r['metric']} ({r['schedule']})" for r in rows]
    xs = range(len(rows))
    w = 0.2
    series = [("rdet standard", "standard"), ("rdet robust", "robust"),
              ("paper standard", "paper_standard"), ("paper robust", "paper_robust")]
    for i, (name, key) in enumerate(series):
        vals = [r[key] if r[key] is not None else 0 for r in rows]
        ax.bar([x + (i - 1.5) * w for x in xs], vals, w, label=name)
    ax.set_xticks(list(xs), labels, fontsize=7)
    ax.set_ylabel("AP")
    ax.legend(fontsize=7)
    path = _save(fig, out_dir / "detection_ap.png")
    plt.close(fig)
    return [path]
