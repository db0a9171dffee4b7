"""The study report: rdet's results beside the paper's published numbers (``build_report``).

Unreadable ``result.json`` files are skipped, and named in the report and on the console (one
bad file must not hide every other result); a folder without a single readable record is a
one-line :class:`~rdet.core.errors.RecordError`, and nothing is written.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional, Tuple

from rdet.core.atomic import atomic_path
from rdet.core.errors import RecordError
from rdet.core.records import iter_records
from rdet.report.markdown import (catalog_markdown, classification_markdown, dataset_markdown, detection_markdown,
                                  pretrain_markdown, robustness_markdown, table1_markdown, to_csv,
                                  unknown_eps_markdown)
from rdet.report.plots import plot_detection, plot_eps_curves
from rdet.report.robustness import robustness_rows
from rdet.report.tables import (NOISE_FLOOR_AP, catalog_rows, classification_rows, dataset_rows, detection_rows,
                                eps_curves, paper_curves, pretrain_rows, table1_rows, unknown_eps_rows)

_HOW = ("Rows never pool different experiments: each names its architecture family, protocol (per-epoch or "
        "feature-cache with its K views), epochs, evaluation split, input size, MODEL.BN (full-network), the "
        "backbone's training method and source model; a field an older record lacks reads `unknown`. Seeds of one "
        "configuration are averaged and shown as mean [min, max] (n=seeds). Values are each run's final epoch "
        "(the record's `value`; its `best_value` is not used). A paper number beside a row of another protocol "
        "names the difference and gets no Δ. A difference is bold only when the two seed ranges do not overlap; "
        "one inside the spread says so, one from single seeds says `1 seed: no spread`.\n")

__all__ = ["build_report"]


def _write(path: Path, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return path


def read_records(runs_dir: Path, out: Path) -> Tuple[List[Dict], List[Tuple[str, str]]]:
    """The readable records under ``runs_dir`` (except the report's own folder) and the
    unreadable ones as ``(path, message)``; :class:`RecordError` if there is no readable one."""
    bad: List[Tuple[str, str]] = []
    records = [r for r in iter_records(runs_dir, bad) if not Path(r["_path"]).is_relative_to(out)]
    if not records:
        extra = f" ({len(bad)} unreadable, e.g. {bad[0][1]})" if bad else ""
        raise RecordError(f"{runs_dir}: no readable result.json records{extra}")
    return records, bad


def build_report(runs_dir: str | Path, out_dir: Optional[str | Path] = None) -> Dict[str, object]:
    """Read every ``result.json`` under ``runs_dir``; write ``report.md``, CSV tables and PNG plots
    into ``out_dir`` (default ``runs_dir/report``). Returns the Markdown, the written paths and the
    skipped (unreadable) records."""
    runs_dir = Path(runs_dir)
    out = Path(out_dir) if out_dir else runs_dir / "report"
    records, bad = read_records(runs_dir, out)
    cls_rows, det_rows, pre_rows = classification_rows(records), detection_rows(records), pretrain_rows(records)
    rob_rows, cat_rows = robustness_rows(records), catalog_rows(records)
    unknown, curves = unknown_eps_rows(records), eps_curves(records)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"markdown": out / "report.md"}
    notes = sorted({r.get("data_note") for r in records if r.get("data_note")})
    md = [f"# rdet report: {runs_dir}\n", f"{len(records)} result records.\n\n", _HOW]
    if bad:
        md.append(f"\nSkipped {len(bad)} unreadable record(s):\n" + "".join(f"- {m}\n" for _, m in bad))
    if notes:
        md.append("\nData:\n" + "".join(f"- {n}\n" for n in notes))
    if cat_rows:
        md += ["\n## Catalog models and their published numbers\n",
               "The paper's clean ImageNet top-1 (Tables 3, 3b, 4) and, for models RobustBench lists, its clean and "
               "AutoAttack accuracy (Linf 4/255, its 5,000-image ImageNet subset).\n\n", catalog_markdown(cat_rows)]
    if pre_rows:
        md += ["\n## Source models (pretraining)\n",
               "Paper column: its Tables 3, 3b and 4 (clean ImageNet accuracy), for ImageNet runs.\n\n",
               pretrain_markdown(pre_rows)]
    if cls_rows:
        md += ["\n## Table 1: best transfer accuracy over architectures, eps and lr\n",
               "L2 models at full resolution. Paper columns: its Table 1; — where the paper has no such dataset.\n\n",
               table1_markdown(table1_rows(cls_rows))]
        md += ["\n## Transfer to classification (Table 1 style: best over eps and lr; mean [min, max] over seeds)\n",
               "Paper columns: its Table 8/9 (L2), 10/11 (32 px), 6 (Linf) or 7 (other architectures) for the same "
               "dataset, mode, architecture and metric; — where the paper has no such entry.\n\n",
               classification_markdown(cls_rows),
               "\n### Datasets\n", "The paper's Table 5 beside what each run's data really was.\n\n",
               dataset_markdown(dataset_rows(records))]
    if rob_rows:
        md += ["\n## Robust accuracy (rdet.evaluate): PGD and AutoAttack, never pooled\n",
               "One row per attack and its settings; AutoAttack − PGD against the strongest PGD of the same model, "
               "data and eps. RobustBench's numbers beside its models; Δ only for rows measured as RobustBench "
               "does.\n\n", robustness_markdown(rob_rows)]
        paths["robustness_csv"] = out / "robustness.csv"
    if det_rows:
        md += ["\n## Detection and instance segmentation (Figure 4 style)\n",
               "Paper columns: its Figure 4 (VOC R50-C4; COCO R50-FPN 3x); — for other datasets. A row with an AP "
               f"below {NOISE_FLOOR_AP:g} is a wiring check (the pipeline ran), not a comparison.\n\n",
               detection_markdown(det_rows)]
    if unknown:
        md += ["\n## Results from source models of unknown eps\n",
               "Their backbone's robustness is not recorded, so they count as neither standard nor robust above.\n\n",
               unknown_eps_markdown(unknown)]
    if cls_rows:
        paths["classification_csv"] = _write(out / "classification.csv", to_csv(cls_rows))
    if rob_rows:
        _write(paths["robustness_csv"], to_csv(rob_rows))
    if det_rows:
        paths["detection_csv"] = _write(out / "detection.csv", to_csv(det_rows))
    plots = plot_eps_curves(curves, paper_curves(curves), out) + plot_detection(det_rows, out)
    if plots:
        md += ["\n## Plots\n"] + [f"- ![{p.stem}]({p.name}) `{p}`\n" for p in plots]
    text = "".join(md)
    _write(paths["markdown"], text)
    return {"markdown": text, "paths": paths, "plots": plots, "records": len(records), "skipped": bad}
