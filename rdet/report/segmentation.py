"""The semantic segmentation section of the report: segmentation records -> Markdown.

One table per setting (test dataset, head, crop, iterations, images per batch): a row per
backbone (arch, norm, eps, training method) with mIoU as mean [min, max] over seeds, fwIoU and
pixel accuracy; robust - standard per arch and setting with both sides' seeds and spreads
(``rdet.report.stats``: bold only when the seed ranges do not overlap); the published ImageNet
baseline (``rdet/paper/segmentation_baselines.csv``) beside the rows measured the same way
(same dataset, head, backbone, crop and iterations); box AP of the same backbone file when
the records hold a detection run of it; the backbone's clean top-1 on its source task (measured:
the study's pretraining record of that file; published: the paper's ImageNet top-1 of a catalog
release), so mIoU sits beside AP and top-1; and the data each setting ran on.
"""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Tuple

from rdet.report.stats import ConfigResult, diff_text, difference, result_text

HEADS = {"SemSegFPNHead": "Semantic FPN", "UperNetHead": "UperNet", "DeepLabV3PlusHead": "DeepLabV3+",
         "DeepLabV3PlusGlobalPoolHead": "DeepLabV3+"}
DATASETS = {"ade20k_sem_seg_val": "ADE20K", "cityscapes_fine_sem_seg_val": "Cityscapes",
            "voc_2012_sem_seg_val": "Pascal VOC 2012"}


def _setting(r: Dict) -> Tuple:
    crop = "x".join(str(c) for c in r.get("crop_size") or []) or "full"
    return (r.get("dataset"), r.get("head"), crop, r.get("iterations"), r.get("ims_per_batch"))


def _backbone(r: Dict) -> Tuple:
    b = r.get("backbone") or {}
    eps = b.get("eps") or 0.0
    return (b.get("arch"), b.get("norm") if eps else None, float(eps), b.get("method") if eps else None)


def _fmt_eps(norm: Optional[str], eps: float) -> str:
    if not eps:
        return "0 (standard)"
    if norm == "linf":
        return f"{eps * 255:g}/255 (linf)"
    return f"{eps:g} ({norm or '?'})"


def published(dataset: str, head: str, arch: str, crop: str, iterations) -> Optional[Dict[str, str]]:
    """The shipped baseline measured as this setting was (dataset, head, backbone, crop and
    iterations all equal), else ``None``."""
    from rdet.paper import read_table

    for row in read_table("segmentation"):
        if (row["dataset"] == DATASETS.get(dataset) and row["head"] == HEADS.get(head) and row["backbone"] == arch
                and row["crop"] == crop and str(iterations) == row["iterations"]):
            return row
    return None


def _box_ap(records: List[Dict]) -> Dict[str, float]:
    """Box AP of each backbone file (its ``source``) among detection records, best over runs."""
    out: Dict[str, float] = {}
    for r in records:
        src = (r.get("backbone") or {}).get("source")
        if r.get("task") == "detection" and r.get("box_AP") is not None and src:
            out[src] = max(out.get(src, float("-inf")), r["box_AP"])
    return out


def _same_file(a: str, b: str) -> bool:
    return a == b or Path(a).expanduser().resolve() == Path(b).expanduser().resolve()


def _top1(records: List[Dict]) -> Dict[str, str]:
    """Clean top-1 of each backbone file on its source task, as text with where it comes from:
    a pretraining record of the same file (measured here), else the paper's ImageNet top-1 when
    the file is a catalog release (never the paper's number for a model trained here)."""
    from rdet.backbones.catalog import get_entry
    from rdet.report.tables import paper_imagenet

    measured = [((r.get("backbone") or {}).get("source") or r.get("checkpoint"), r["value"]) for r in records
                if r.get("task") == "pretrain" and isinstance(r.get("value"), (int, float))]
    out: Dict[str, str] = {}
    for r in records:
        src = (r.get("backbone") or {}).get("source")
        if r.get("task") != "segmentation" or not src or src in out:
            continue
        hit = next((v for s, v in measured if s and _same_file(str(s), str(src))), None)
        if hit is not None:
            out[src] = f"{hit:.2f} (pretraining)"
            continue
        entry = get_entry(src) or get_entry(_stem(src))
        clean = paper_imagenet(entry.arch, entry.norm, entry.eps) if entry else None
        if clean is not None:
            out[src] = f"{clean:.2f} (paper, ImageNet)"
    return out


def _stem(src: str) -> str:
    """``/cache/resnet50_l2_eps3.ckpt`` -> ``resnet50_l2_eps3`` (a catalog name passes through)."""
    return Path(src).name.split(".")[0]


def segmentation_markdown(records: Iterable[Dict]) -> str:
    """The section's Markdown ('' when there is no training record of segmentation)."""
    records = list(records)
    seg = [r for r in records if r.get("task") == "segmentation" and not r.get("eval_only")
           and r.get("mIoU") is not None]
    if not seg:
        return ""
    ap, top1 = _box_ap(records), _top1(records)
    by_setting: Dict[Tuple, Dict[Tuple, List[Dict]]] = defaultdict(lambda: defaultdict(list))
    for r in seg:
        by_setting[_setting(r)][_backbone(r)].append(r)
    out = ["## Semantic segmentation (mIoU, %)", ""]
    for setting in sorted(by_setting, key=str):
        dataset, head, crop, iters, batch = setting
        rows = by_setting[setting]
        out += [f"### {DATASETS.get(dataset, dataset)}, {HEADS.get(head, head)}, crop {crop}, {iters} iterations "
                f"of {batch} images", ""]
        notes = sorted({r.get("data_note") or "" for recs in rows.values() for r in recs} - {""})
        if notes:
            out += [f"Data: {'; '.join(notes)}", ""]
        out += ["| backbone | eps | method | mIoU mean [min, max] (seeds) | fwIoU | pixel acc. | published "
                "(ImageNet, same setting) | box AP (same backbone) | top-1 (source task) |",
                "|---|---|---|---|---|---|---|---|---|"]
        results = {}
        for key in sorted(rows, key=lambda k: (str(k[0]), k[1] or "", k[2], k[3] or "")):
            arch, norm, eps, method = key
            recs = rows[key]
            res = ConfigResult.of([r["mIoU"] for r in recs], eps=eps, lr=None, norm=norm, method=method)
            results[key] = res
            pub = published(dataset, head, arch, crop, iters)
            src = {(r.get("backbone") or {}).get("source") for r in recs}
            box = [ap[s] for s in src if s in ap]
            seeds = ",".join(str(r.get("seed")) for r in sorted(recs, key=lambda r: str(r.get("seed"))))
            out.append(f"| {arch} | {_fmt_eps(norm, eps)} | {method or '—'} | {result_text(res)} seeds {seeds} | "
                       f"{_mean(recs, 'fwIoU')} | {_mean(recs, 'pixel_accuracy')} | "
                       f"{pub['mIoU'] + ' (' + pub['source'].split(':')[0] + ')' if pub else '—'} | "
                       f"{f'{max(box):.2f}' if box else '—'} | {' / '.join(sorted({top1[s] for s in src if s in top1})) or '—'} |")
        out += [""] + _robust_minus_standard(results) + [""]
    out += _baselines_list()
    return "\n".join(out).rstrip() + "\n"


def _mean(recs: List[Dict], key: str) -> str:
    vals = [r[key] for r in recs if r.get(key) is not None]
    return f"{sum(vals) / len(vals):.2f}" if vals else "—"


def _robust_minus_standard(results: Dict[Tuple, ConfigResult]) -> List[str]:
    lines = []
    for (arch, norm, eps, method), res in sorted(results.items(), key=lambda kv: (str(kv[0][0]), kv[0][2])):
        std = next((v for (a, _, e, _), v in results.items() if a == arch and not e), None)
        if eps and std is not None:
            lines.append(f"- {arch} {_fmt_eps(norm, eps)}{' ' + method if method else ''} - standard: "
                         f"{diff_text(difference(res, std))}")
    if not lines:
        return ["Robust - standard: no arch has both a standard and a robust backbone in this setting."]
    return ["Robust - standard (mIoU points; bold where the seed ranges do not overlap):"] + lines


def _baselines_list() -> List[str]:
    from rdet.paper import read_table

    lines = ["Published baselines (ImageNet-pretrained, single scale; shown beside a row only when it was "
             "measured in the same setting):", ""]
    for r in read_table("segmentation"):
        lines.append(f"- {r['dataset']} {r['head']} {r['backbone']}, {r['crop']}, {int(r['iterations']) // 1000}k "
                     f"iterations: {r['mIoU']} mIoU — {r['source']}")
    return lines
