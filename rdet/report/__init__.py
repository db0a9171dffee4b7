"""The study report: rdet's results beside the paper's published numbers (``build_report``)."""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional

from rdet.atomic import atomic_path
from rdet.records import iter_records
from rdet.report.markdown import (classification_markdown, detection_markdown, pretrain_markdown, table1_markdown,
                                  to_csv)
from rdet.report.plots import plot_detection, plot_eps_curves
from rdet.report.tables import classification_rows, detection_rows, eps_curves, pretrain_rows, table1_rows

__all__ = ["build_report"]


def _write(path: Path, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return path


def _paper_curves(curves) -> Dict:
    from rdet.paper import read_table
    from rdet.report.tables import arch_paper_name, paper_name

    out = {}
    for (ds, mode, arch) in curves:
        pd, pa = paper_name(ds), arch_paper_name(arch)
        rows = [r for r in read_table("table8" if mode == "fixed" else "table9")
                if r["dataset"] == pd and r["arch"] == pa] if pd and pa else []
        if rows:
            out[(ds, mode, arch)] = sorted((float(r["eps"]), float(r["accuracy"])) for r in rows)
    return out


def build_report(runs_dir: str | Path, out_dir: Optional[str | Path] = None) -> Dict[str, object]:
    """Read every ``result.json`` under ``runs_dir``; write ``report.md``, CSV tables and PNG plots
    into ``out_dir`` (default ``runs_dir/report``). Returns the Markdown and the written paths."""
    runs_dir = Path(runs_dir)
    out = Path(out_dir) if out_dir else runs_dir / "report"
    out.mkdir(parents=True, exist_ok=True)
    records: List[Dict] = [r for r in iter_records(runs_dir) if not Path(r["_path"]).is_relative_to(out)]
    cls_rows, det_rows, pre_rows = classification_rows(records), detection_rows(records), pretrain_rows(records)
    curves = eps_curves(records)
    notes = sorted({r.get("data_note") for r in records if r.get("data_note")})
    md = [f"# rdet report: {runs_dir}\n", f"{len(records)} result records.\n"]
    if notes:
        md.append("Data:\n" + "".join(f"- {n}\n" for n in notes))
    if pre_rows:
        md += ["\n## Source models (pretraining)\n", pretrain_markdown(pre_rows)]
    if cls_rows:
        md += ["\n## Table 1: best transfer accuracy over architectures, eps and lr\n",
               "Paper columns: its Table 1; — where the paper has no such dataset.\n\n",
               table1_markdown(table1_rows(cls_rows))]
        md += ["\n## Transfer to classification (Table 1 style: best over eps and lr; mean [min, max] over seeds)\n",
               "Paper columns: its Tables 8/9 for the same dataset, mode and architecture; — where the paper has "
               "no such entry.\n\n", classification_markdown(cls_rows)]
    if det_rows:
        md += ["\n## Detection and instance segmentation (Figure 4 style)\n",
               "Paper columns: its Figure 4 (VOC R50-C4; COCO R50-FPN 3x); — for other datasets.\n\n",
               detection_markdown(det_rows)]
    paths = {"markdown": out / "report.md"}
    if cls_rows:
        paths["classification_csv"] = _write(out / "classification.csv", to_csv(cls_rows))
    if det_rows:
        paths["detection_csv"] = _write(out / "detection.csv", to_csv(det_rows))
    plots = plot_eps_curves(curves, _paper_curves(curves), out) + plot_detection(det_rows, out)
    if plots:
        md += ["\n## Plots\n"] + [f"- ![{p.stem}]({p.name}) `{p}`\n" for p in plots]
    text = "".join(md)
    _write(paths["markdown"], text)
    return {"markdown": text, "paths": paths, "plots": plots, "records": len(records)}
