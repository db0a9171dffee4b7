"""What defines an experiment, read from a result record, so the report never pools two.

Seeds of one experiment are averaged; anything else that differs makes another row, and each row
names it. A field an older record does not carry reads ``unknown`` (never a default that would
pool the record with labelled ones). What is read, per task:

* every task: the backbone (arch, its architecture family, norm, eps, training method, source
  file or catalog name);
* classification transfer: mode, protocol of the head (``per-epoch`` or ``feature-cache (K
  views)``), epochs, evaluation split (``test`` or ``validation``), input scale (train size,
  downscale), ``MODEL.BN`` for full-network runs, the optimizer recipe (``recipe.name``), and the
  ``DATA.TEST_*`` settings that overrode the weights' own test preprocessing;
* pretraining: epochs, train size, the optimizer recipe and the training method;
* detection: the schedule and the meta-architecture.

:func:`paper_deviations` lists how a row's experiment differs from the paper's protocol: a paper
number is set beside a row only with that list (empty for the paper's protocol).
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Dict, List, Optional, Tuple

UNKNOWN = "unknown"

# Architecture families by name prefix (longest first where one prefix holds another), the
# registry's ``BackboneSpec.family`` names, so a record's arch needs no registry (and no torch)
# to be grouped; the record's ``backbone.family`` wins.
_FAMILIES = (("wide_resnet", "resnet"), ("resnext", "resnet"), ("resnet", "resnet"), ("densenet", "densenet"),
             ("vgg", "vgg"), ("mobilenet", "mobilenet"), ("shufflenet", "shufflenet"), ("mnasnet", "mnasnet"),
             ("convnext", "convnext"), ("swin", "swin"), ("vit", "vit"), ("deit", "vit"), ("xcit", "xcit"),
             ("efficientnet", "efficientnet"), ("regnet", "regnet"))

# The paper's protocol (appendix A.2, A.1, C): what a row must be to sit beside its numbers
# without a label.
PAPER_TRANSFER = {"protocol": "per-epoch", "epochs": 150, "split": "test", "train size": 224, "BN": "train",
                  "reported": "final epoch", "recipe": "paper_sgd",
                  "preprocessing": None}  # the weights' own test preprocessing: a record with overrides differs
PAPER_PRETRAIN = {"epochs": 90, "train size": 224, "recipe": "paper_sgd"}
PAPER_METHODS = ("standard", "pgd")  # the release: PGD-3 adversarial training, or standard at eps 0
PAPER_DETECTION = {"arch": "resnet50", "schedule": {"voc": "voc-18k", "coco": "3x"}}


def backbone(rec: Dict) -> Dict:
    return rec.get("backbone") or {}


def eps_of(rec: Dict) -> Optional[float]:
    """The source model's eps; None when unknown (never read as 0)."""
    e = backbone(rec).get("eps")
    return None if e is None else float(e)


def arch_of(rec: Dict) -> str:
    return backbone(rec).get("arch") or rec.get("arch") or "?"


def norm_of(rec: Dict) -> str:
    return backbone(rec).get("norm") or "l2"


def arch_family(arch: str) -> str:
    """``resnet`` for resnet18 / wide_resnet50_2, ``vit`` for vit_base_patch16_224, ...; else the
    name's leading letters (``unknown`` for none)."""
    a = (arch or "").lower()
    for prefix, fam in _FAMILIES:
        if a.startswith(prefix):
            return fam
    m = re.match(r"[a-z]+", a)
    return m[0] if m else UNKNOWN


def family_of(rec: Dict) -> str:
    return backbone(rec).get("family") or arch_family(arch_of(rec))


def catalog_name(rec: Dict) -> Optional[str]:
    """The rdet catalog name of the record's source model (a name, or a downloaded release file),
    else ``None``."""
    from rdet.backbones.catalog import get_entry

    source = str(backbone(rec).get("source") or rec.get("weights") or "")
    if not source:
        return None
    entry = get_entry(source) or get_entry(Path(source).stem)
    return entry.name if entry else None


def method_of(rec: Dict) -> str:
    """How the source model was trained: the record's ``backbone.method``; ``standard`` at eps 0;
    ``pgd`` for a model of the paper's release (the catalog); else ``unknown``."""
    m = backbone(rec).get("method") or (rec.get("training") or {}).get("method")
    if m:
        return str(m)
    eps = eps_of(rec)
    if eps == 0:
        return "standard"
    if eps is not None and catalog_name(rec) is not None:
        return "pgd"
    return UNKNOWN


def _recipe(rec: Dict):
    """The optimizer recipe's name (``paper_sgd``, ``adamw_cosine``, ...) from the record's ``recipe``."""
    r = rec.get("recipe")
    return (r.get("name") or UNKNOWN) if isinstance(r, dict) else (r or UNKNOWN)


def _get(rec: Dict, key: str):
    v = rec.get(key)
    return UNKNOWN if v is None or v == "" else v


def transfer_experiment(rec: Dict) -> Tuple[Tuple[str, object], ...]:
    """``(("protocol", ...), ("epochs", ...), ...)`` of a classification record, in display order."""
    fields: List[Tuple[str, object]] = [("protocol", _get(rec, "protocol")), ("epochs", _get(rec, "epochs")),
                                        ("split", _get(rec, "eval_split")), ("train size", _get(rec, "train_size"))]
    if rec.get("mode") == "full":
        fields.append(("BN", _get(rec, "bn")))
    fields.append(("recipe", _recipe(rec)))
    if rec.get("reported") not in (None, "final epoch"):  # rdet reports the final epoch; another choice is apart
        fields.append(("reported", rec["reported"]))
    overrides = (rec.get("preprocessing") or {}).get("overrides")
    if overrides:  # test images not preprocessed as the weights were evaluated: another experiment, named
        fields.append(("preprocessing", ", ".join(overrides)))
    return tuple(fields)


def pretrain_experiment(rec: Dict) -> Tuple[Tuple[str, object], ...]:
    fields = [("epochs", _get(rec, "epochs")), ("train size", _get(rec, "train_size")), ("recipe", _recipe(rec)),
              ("method", method_of(rec))]
    run, planned = rec.get("epochs_run"), rec.get("epochs")
    if run is not None and planned is not None and run < planned:  # e.g. the overfitting guard stopped it
        fields.append(("stopped", run))
    return tuple(fields)


def experiment_text(fields) -> str:
    """``per-epoch, 150 epochs, test split, 224 px, BN train``: a row's experiment in words."""
    words = {"stopped": "stopped after {} epochs", "epochs": "{} epochs", "split": "{} split", "train size": "{} px",
             "BN": "BN {}", "method": "{}", "recipe": "recipe {}",
             "reported": "reports the {}", "preprocessing": "test preprocessing overridden ({})"}

    def one(k, v):
        if v == UNKNOWN:
            return f"{k} unknown"
        text = words.get(k, "{}").format(v)
        return text[:-1] if k in ("epochs", "stopped") and v == 1 else text  # "1 epoch"

    return ", ".join(one(k, v) for k, v in fields)


def paper_deviations(fields, paper: Dict[str, object] = PAPER_TRANSFER) -> List[str]:
    """How an experiment differs from the paper's (``["feature-cache (4 views)", "3 epochs"]``);
    an unknown field counts as a difference: it cannot be shown to be the paper's."""
    out = []
    for k, v in fields:
        if k in paper and v != paper[k]:
            out.append(f"{k} unknown" if v == UNKNOWN else experiment_text([(k, v)]))
    return out


def method_deviation(method: Optional[str]) -> List[str]:
    if method is None or method in PAPER_METHODS:
        return []
    return [f"backbone method {method}"]
