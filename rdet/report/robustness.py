"""Robust accuracy (``rdet.evaluate`` records): PGD and AutoAttack side by side, never pooled.

One row per (model, data, norm, eps, attack with its settings): PGD-k with its step size and
restarts, AutoAttack with its version and budget are different attacks and never share a row;
records of the same row (seeds) are averaged and shown with their spread. An AutoAttack row
shows its difference from the strongest PGD row of the same model, data and eps. For catalog
models that RobustBench lists, its published clean and AutoAttack accuracy sit beside each row;
a row measured otherwise than RobustBench (not its 5,000-image list, checked by content; another norm
or eps; another attack, a reduced budget or other target classes; another preprocessing or image
size than RobustBench uses for that model; a bf16/fp16 clean pass; a fitted head) names each
difference and gets no difference to them. A faithful row's AutoAttack gap within
:data:`RB_NOISE_IMAGES` images is labelled as RobustBench's own run-to-run noise, never bolded.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Dict, List, Tuple

from rdet.paper import grid_eps
from rdet.report.experiment import arch_of, catalog_name, family_of
from rdet.report.stats import ConfigResult, difference, difference_within
from rdet.report.tables import dataset_label, eps_text, published, short_source

ROBUSTBENCH = {"dataset": "imagenet", "subset": "robustbench", "n_images": 5000, "norm": "linf", "eps": 4 / 255}


def attack_entries(rec: Dict) -> List[Dict]:
    """The record's ``attacks`` (one entry per attack and eps)."""
    return list(rec.get("attacks") or [])


def attack_text(e: Dict) -> str:
    """``PGD-20 (step 0.00157, 1 restart)``, ``AutoAttack standard`` (``, reduced budget ...``)."""
    if e.get("attack") == "pgd":
        step = f"step {e['step_size']:.3g}, " if e.get("step_size") else ""
        restarts = e.get("restarts")
        return f"PGD-{e.get('steps', '?')} ({step}{restarts} restart{'s' if restarts != 1 else ''})"
    if e.get("attack") == "autoattack":
        budget = "" if e.get("standard_budget", True) else f", reduced budget ({e.get('n_iter')} iterations)"
        # 9 is the standard's own setting (every ImageNet run); fewer only below 10 classes
        targets = f", {e['n_target_classes']} target classes" if e.get("n_target_classes") not in (None, 0, 9) else ""
        return f"AutoAttack {e.get('version', '?')}{targets}{budget}"
    return str(e.get("attack"))


def _data_text(rec: Dict) -> str:
    """``imagenet (robustbench subset)``, ``fashion_mnist[0-4]``."""
    subset = f" ({rec['subset']} subset)" if rec.get("subset") else ""
    return f"{dataset_label(dict(rec, dataset=rec.get('dataset') or '?'))}{subset}"


# RobustBench's own AutoAttack runs are seeded from the clock and batched otherwise: rerunning the
# same model moves its robust accuracy by a few of the 5,000 images. A gap within this band is that
# noise, not a finding (the clean pass is deterministic and gets no band).
RB_NOISE_IMAGES = 5
EPS_TOLERANCE = 1e-6  # float round-off of 4/255, not a neighbouring radius


def _rb_preprocessing(catalog: str) -> Dict:
    """The preprocessing RobustBench evaluates catalog model ``catalog`` with, at 224 px."""
    from rdet.backbones.catalog import get_entry
    from rdet.backbones.preprocessing import preprocessing_for

    entry = get_entry(catalog)
    p = preprocessing_for(224, entry.arch, entry)
    return {"resize": p.resize, "crop": p.crop, "interpolation": p.interpolation}


def _rb_deviations(rec: Dict, e: Dict, n_images: int) -> List[str]:
    """Each way ``rec``'s entry ``e`` was measured otherwise than RobustBench measures: its
    5,000-image list (by content), Linf 4/255, standard AutoAttack at full budget with 9 target
    classes, the model's own preprocessing at 224 px, an fp32 clean pass, the checkpoint's head."""
    from rdet.data.robustbench import list_sha1

    out = []
    if rec.get("dataset") != ROBUSTBENCH["dataset"] or rec.get("subset") != ROBUSTBENCH["subset"]:
        out.append(f"data {_data_text(rec)}")
    elif n_images != ROBUSTBENCH["n_images"]:
        out.append(f"{n_images} images")
    elif rec.get("images_sha1") != list_sha1():
        out.append("not RobustBench's image list" if rec.get("images_sha1") else "image list not recorded")
    eps = float(e.get("eps") or 0)
    if e.get("norm") != ROBUSTBENCH["norm"] or abs(eps - ROBUSTBENCH["eps"]) > EPS_TOLERANCE:
        out.append(f"{e.get('norm')} eps {eps_text(e.get('norm'), eps) if e.get('norm') != 'linf' else f'{eps * 255:.4g}/255'}")
    if e.get("attack") != "autoattack" or e.get("version") != "standard" or not e.get("standard_budget", True) \
            or e.get("n_target_classes") not in (None, 9):
        out.append(f"attack {attack_text(e)}")
    prep = rec.get("preprocessing")
    catalog = catalog_name(rec)
    if not prep:
        out.append("preprocessing not recorded")
    elif catalog:
        want = _rb_preprocessing(catalog)
        have = {k: prep.get(k) for k in want}
        if have != want:
            out.append("preprocessing " + ", ".join(f"{k} {have[k]} (RobustBench: {want[k]})"
                                                    for k in want if have[k] != want[k]))
    if rec.get("image_size", 224) != 224 or rec.get("downscale"):
        out.append(f"image size {rec.get('image_size')}" + (f", downscaled to {rec['downscale']}" if rec.get("downscale")
                                                            else ""))
    if rec.get("amp", "off") != "off":
        out.append(f"clean pass in {rec['amp']} (RobustBench: fp32)")
    if (rec.get("head") or {}).get("source", "checkpoint") != "checkpoint":
        out.append("head fitted on the training split")
    return out


def _override_text(rec: Dict) -> str:
    """The test preprocessing settings that replaced the weights' own (``""``: none)."""
    return ", ".join((rec.get("preprocessing") or {}).get("overrides") or [])


def robustness_rows(records: List[Dict]) -> List[Dict]:
    """Rows of :mod:`rdet.report.robustness` (see the module docstring)."""
    groups: Dict[Tuple, List[Tuple[float, float]]] = defaultdict(list)
    meta: Dict[Tuple, Tuple[Dict, Dict]] = {}
    for r in records:
        if r.get("task") != "robustness":
            continue
        model = catalog_name(r) or short_source((r.get("backbone") or {}).get("source") or r.get("weights"))
        head = (r.get("head") or {}).get("source", "checkpoint")
        rb_id = published(catalog_name(r)).get("robustbench_id")
        for e in attack_entries(r):
            n = int(e.get("n_images") or r.get("n_images") or 0)
            # records measured otherwise than RobustBench (each way named) never share a row with
            # faithful ones, nor with each other
            dev = tuple(_rb_deviations(r, e, n)) if rb_id else ()
            key = (family_of(r), model, arch_of(r), _data_text(r), head, e.get("norm"),
                   grid_eps(e.get("norm"), float(e["eps"])), attack_text(e), n, dev, _override_text(r))
            clean = r.get("clean_top1")
            groups[key].append((clean, float(e["robust_top1"])))
            meta.setdefault(key, (r, e))
    rows = []
    for key, vals in groups.items():
        family, model, arch, data, head, norm, eps, attack, n, dev, override = key
        rec, e = meta[key]
        clean = [c for c, _ in vals if c is not None]
        rows.append({"family": family, "model": model, "arch": arch, "data": data, "head": head, "norm": norm,
                     "eps": eps, "eps_text": eps_text(norm, eps), "attack": attack, "kind": e.get("attack"),
                     "n_images": n, "clean": ConfigResult.of(clean, eps=0.0, lr=None) if clean else None,
                     "robust": ConfigResult.of([v for _, v in vals], eps=eps, lr=None, norm=norm),
                     "catalog": catalog_name(rec), "preprocessing_override": override,
                     "_deviations": dev})
    _add_comparisons(rows)
    for r in rows:
        del r["_deviations"]
    return sorted(rows, key=lambda x: (x["family"], str(x["model"]), x["data"], x["norm"] or "", x["eps"],
                                       x["kind"] != "pgd", x["attack"]))


def _add_comparisons(rows: List[Dict]) -> None:
    """AutoAttack vs the strongest PGD of the same model/data/eps; RobustBench's numbers."""
    pgd: Dict[Tuple, ConfigResult] = {}
    for r in rows:
        k = (r["model"], r["data"], r["head"], r["norm"], r["eps"], r["n_images"])
        if r["kind"] == "pgd" and (k not in pgd or r["robust"].mean < pgd[k].mean):
            pgd[k] = r["robust"]
    for r in rows:
        k = (r["model"], r["data"], r["head"], r["norm"], r["eps"], r["n_images"])
        r["vs_pgd"] = difference(r["robust"], pgd.get(k)) if r["kind"] == "autoattack" else None
        p = published(r["catalog"])
        r["robustbench_id"] = p.get("robustbench_id")
        r["robustbench_clean"] = p.get("robustbench_clean")
        r["robustbench_autoattack"] = p.get("robustbench_autoattack")
        dev = r["_deviations"] if r["robustbench_id"] else ()
        r["robustbench_label"] = "; ".join(dev)
        same = bool(r["robustbench_id"]) and not dev
        band = 100.0 * RB_NOISE_IMAGES / ROBUSTBENCH["n_images"]
        r["delta_robustbench"] = difference_within(r["robust"], r["robustbench_autoattack"], band) if same else None
        r["delta_robustbench_clean"] = difference(r["clean"], r["robustbench_clean"]) if same and r["clean"] else None

