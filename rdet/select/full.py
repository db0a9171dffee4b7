"""``--full-network``: fine-tune the top-k models of a selection with the paper's protocol.

An ordinary study of ``rdet.classify`` cells (``OUTPUT_DIR/full_network/study.yaml``), every
top model x learning rate twice:

* ``val``: trained on the training part, evaluated on the validation split (``DATA.VAL_SIZE``,
  the same split the fixed-feature ranking used); these choose the learning rate and the model;
* ``test``: trained on the whole training set, as the paper does, evaluated on the test set;
  the chosen configuration's number is the one to report, the best of them the test-selected one.
"""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Dict, List, Optional


from rdet.config import get_transfer_cfg, merge_config
from rdet.data.build import datasets_from_cfg
from rdet.data.classification import image_files_of
from rdet.core.errors import ConfigError
from rdet.core.records import read_record


def _transfer_opts(opts: List) -> List[str]:
    """The selection's overrides without its ``SELECT.*`` ones (not keys of a transfer config)."""
    pairs = list(zip(opts[0::2], opts[1::2]))
    return [str(x) for k, v in pairs if not str(k).startswith("SELECT.") for x in (k, v)]


def check_holdout(cfg, select_study: Dict, val_files: Optional[List[str]], n_val: int) -> None:
    """``rdet.classify`` must evaluate the ``val`` cells on the very images rdet.select held out
    (``val_files``, or their count ``n_val`` for in-memory sets), not on the test set or another
    split: checked on the data before anything runs."""
    sel = select_study["select"]
    ccfg = merge_config(get_transfer_cfg(), sel["config"], _val_opts(cfg, sel) + ["DATA.DATASET", sel["dataset"]])
    evaluated = datasets_from_cfg(ccfg)[1]
    files = image_files_of(evaluated)
    same = files == val_files if files is not None and val_files is not None else len(evaluated) == n_val
    if not same:
        raise ConfigError(f"--full-network: rdet.classify would evaluate {len(evaluated)} images for DATA.VAL_SIZE "
                          f"{cfg.DATA.VAL_SIZE:g} that are not the {n_val} validation images rdet.select held out; "
                          f"its datasets do not hold out the same split")


def _val_opts(cfg, sel: Dict) -> List[str]:
    return _transfer_opts(sel["opts"]) + ["DATA.VAL_SIZE", str(cfg.DATA.VAL_SIZE), "DATA.VAL_SEED", str(cfg.DATA.VAL_SEED)]


def full_network_study(cfg, select_study: Dict, top: List[Dict]) -> Dict:
    sel = select_study["select"]
    base = _transfer_opts(sel["opts"])
    return {"description": f"rdet.select --full-network: the top {len(top)} models fine-tuned on {sel['dataset']}",
            "output_dir": str(Path(select_study["output_dir"]) / "full_network"),
            "executor": select_study["executor"], "slurm": select_study["slurm"],
            "backbones": [{"name": r["model"], "weights": r["record"]["backbone"]["source"]} for r in top],
            "classification": {"config": sel["config"], "modes": ["full"], "seeds": [int(cfg.SEED)],
                               "lrs": [float(x) for x in cfg.TRANSFER.LR_GRID],
                               "datasets": [{"name": "val", "dataset": sel["dataset"], "opts": _val_opts(cfg, sel)},
                                            {"name": "test", "dataset": sel["dataset"],
                                             "opts": base + ["DATA.VAL_SIZE", "0.0"]}]}}


def full_network_rows(study) -> List[Dict]:
    """Per model: the lr with the best validation score, its test score; ranked by validation."""
    scores = defaultdict(dict)  # (model, lr) -> {"val": .., "test": ..}
    for c in study.cells:
        if c.kind == "classify":
            split, model = c.name.split("/")[1:3]
            scores[(model, c.params["lr"])][split] = read_record(c.output_dir(study.output_dir) / "result.json")["value"]
    by_model = defaultdict(list)
    for (model, lr), s in scores.items():
        by_model[model].append((s["val"], -lr, lr, s["test"]))
    rows = []
    for model, cands in by_model.items():
        val, _, lr, test = max(cands)
        rows.append({"model": model, "lr": lr, "val": val, "test": test,
                     "best_test": max(t for *_, t in cands)})
    return sorted(rows, key=lambda r: -r["val"])
