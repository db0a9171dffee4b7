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
from rdet.report.sections import ReportContext, ordered_sections, register_section, unshown_tasks

_HOW = ("Rows never pool different experiments: each names its architecture family, protocol (per-epoch or "
        "feature-cache with its K views), epochs, evaluation split, input size, MODEL.BN (full-network), the "
        "backbone's training method and source model; a field an older record lacks reads `unknown`. Seeds of one "
        "configuration are averaged and shown as mean [min, max] (n=seeds). Values are each run's final epoch "
        "(the record's `value`; its `best_value` is not used). A paper number beside a row of another protocol "
        "names the difference and gets no Δ. A difference is bold only when the two seed ranges do not overlap; "
        "one inside the spread says so, one from single seeds says `1 seed: no spread`.\n")

__all__ = ["build_report", "register_section"]


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
    into ``out_dir`` (default ``runs_dir/report``), one part per registered section
    (:mod:`rdet.report.sections`; the task kinds register theirs: import ``rdet.study``), in their
    order; records that no section shows are named. Returns the Markdown, the written paths and the
    skipped (unreadable) records."""
    runs_dir = Path(runs_dir)
    out = Path(out_dir) if out_dir else runs_dir / "report"
    records, bad = read_records(runs_dir, out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"markdown": out / "report.md"}
    notes = sorted({r.get("data_note") for r in records if r.get("data_note")})
    md = [f"# rdet report: {runs_dir}\n", f"{len(records)} result records.\n\n", _HOW]
    if bad:
        md.append(f"\nSkipped {len(bad)} unreadable record(s):\n" + "".join(f"- {m}\n" for _, m in bad))
    if notes:
        md.append("\nData:\n" + "".join(f"- {n}\n" for n in notes))
    unshown = unshown_tasks(records)
    if unshown:  # a kind whose module (and so its section) is not loaded: say so, never drop in silence
        md.append("\nRecords no registered section shows (import the module of their task kind): "
                  + ", ".join(f"{n} of task {t!r}" for t, n in sorted(unshown.items(), key=str)) + "\n")
    ctx, plots = ReportContext(runs_dir, out), []
    for section in ordered_sections():
        part = section.build(records, ctx)
        if part is None:
            continue
        md.append(part.markdown)
        for name, text in part.csv.items():
            paths[f"{Path(name).stem}_csv"] = _write(out / name, text)
        plots += part.plots
    if plots:
        md += ["\n## Plots\n"] + [f"- ![{p.stem}]({p.name}) `{p}`\n" for p in plots]
    text = "".join(md)
    _write(paths["markdown"], text)
    return {"markdown": text, "paths": paths, "plots": plots, "records": len(records), "skipped": bad}
