"""Cell kinds: how one cell of a study calls the library. ``CELL_KINDS`` is an fvcore registry of
functions ``run(cell, study) -> None``; each leaves ``result.json`` in the cell's folder when the
cell is complete (the runner's only test of "done") and resumes a half-done cell."""
from __future__ import annotations

import subprocess
import time
from pathlib import Path

from fvcore.common.registry import Registry

from rdet.config import get_pretrain_cfg, get_transfer_cfg, merge_config
from rdet.core.errors import ConfigError
from rdet.core.records import read_record, write_record

CELL_KINDS = Registry("STUDY_CELL")
CELL_KINDS.__doc__ = "Functions run(cell, study) that execute one study cell and write its result.json."


def _resolve(study, path):
    """A config path in a study: as given if it exists (relative to the working directory), else
    relative to the study file, else to the rdet package (so ``configs/...`` works from anywhere,
    installed or not: the configs ship in ``rdet/configs``)."""
    from rdet.config import CONFIG_DIR

    if path is None:
        return None
    p = Path(path)
    if p.is_absolute() or p.exists():
        return str(p)
    for base in (study.path.parent, CONFIG_DIR.parent):
        if (base / p).exists():
            return str(base / p)
    return str(p)


def _backbone_weights(study, params) -> str:
    if params.get("producer"):
        return str(Path(study.output_dir) / params["producer"] / "model_final.pth")
    return params["weights"]


@CELL_KINDS.register()
def command(cell, study):
    out = cell.output_dir(study.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    start = time.time()
    proc = subprocess.run(cell.params["run"], shell=True, cwd=out)
    if proc.returncode:
        raise ConfigError(f"study cell {cell.name}: command exited {proc.returncode}: {cell.params['run']}")
    write_record(out, {"task": "command", "name": cell.name, "wall_time_s": time.time() - start})


@CELL_KINDS.register()
def pretrain(cell, study):
    from rdet.tasks import pretrain as pretrain_mod

    p = cell.params
    cfg = merge_config(get_pretrain_cfg(), _resolve(study, p["config"]), p["opts"])
    merge_config(cfg, None, ["ADV.EPS", str(p["eps"]), "ADV.NORM", p["norm"],
                             "OUTPUT_DIR", str(cell.output_dir(study.output_dir))])
    pretrain_mod.run(cfg, resume=True)


@CELL_KINDS.register()
def classify(cell, study):
    from rdet.tasks import transfer as classify_mod

    p = cell.params
    cfg = merge_config(get_transfer_cfg(), _resolve(study, p["config"]), p["opts"])
    merge_config(cfg, None, ["DATA.DATASET", p["dataset"], "TRANSFER.MODE", p["mode"], "SOLVER.BASE_LR",
                             str(p["lr"]), "SEED", str(p["seed"]), "MODEL.WEIGHTS", _backbone_weights(study, p),
                             "OUTPUT_DIR", str(cell.output_dir(study.output_dir))])
    classify_mod.run(cfg, resume=True)


@CELL_KINDS.register()
def convert(cell, study):
    from rdet.convert import convert_to_detectron2

    out = cell.output_dir(study.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    start = time.time()
    res = convert_to_detectron2(_backbone_weights(study, cell.params), out / "backbone.pkl")
    write_record(out, {"task": "convert", "backbone": {k: res.meta.get(k) for k in ("arch", "norm", "eps", "method", "source")},
                       "weights": str(res.weights), "config": str(res.config), "max_rel_error": res.max_rel_error,
                       "wall_time_s": time.time() - start})


@CELL_KINDS.register()
def detect(cell, study):
    from rdet.detection import run as detection_run

    p = cell.params
    conv = read_record(Path(study.output_dir) / p["convert"] / "result.json")
    config = _resolve(study, p["config"])
    opts = list(p["opts"]) + _geometry_opts(conv["config"]) + [
        "MODEL.WEIGHTS", conv["weights"], "OUTPUT_DIR", str(cell.output_dir(study.output_dir))]
    check_c4(cell.name, config, opts, conv["backbone"]["arch"])
    detection_run(config, opts, resume=True, console=False)


def check_c4(name: str, config: str, opts, arch: str) -> None:
    """A C4 detector (``Res5ROIHeads``: the box head is the backbone's res5 stage, which
    detectron2 always builds from Bottleneck blocks) needs a Bottleneck ResNet (depth >= 50 in the
    registry's Detectron2 geometry: ResNet-50/101, WRN-50-2/4, ResNeXt-50); FPN detectors take any
    convertible ResNet."""
    from rdet.backbones import get_spec
    from rdet.detection.train import build_cfg

    if build_cfg(config, opts).MODEL.ROI_HEADS.NAME != "Res5ROIHeads":
        return
    d2 = get_spec(arch).d2
    if d2 is None or d2.depth < 50:
        raise ConfigError(f"{name}: {Path(config).name} is a C4 detector (Res5ROIHeads), which needs a "
                          f"Bottleneck ResNet (depth >= 50), not {arch}")


def _geometry_opts(converter_yaml: str):
    """The converter's backbone settings (depth, widths, mean/std) as KEY VALUE overrides, so a
    detection config written for R50 runs the backbone it is given."""
    import yaml

    y = yaml.safe_load(Path(converter_yaml).read_text())
    r = y["MODEL"]["RESNETS"]
    opts = ["MODEL.PIXEL_MEAN", str(y["MODEL"]["PIXEL_MEAN"]), "MODEL.PIXEL_STD", str(y["MODEL"]["PIXEL_STD"])]
    for k in ("DEPTH", "RES2_OUT_CHANNELS", "WIDTH_PER_GROUP", "NUM_GROUPS"):
        opts += [f"MODEL.RESNETS.{k}", str(r[k])]
    return opts


def run_cell(cell, study) -> None:
    CELL_KINDS.get(cell.kind)(cell, study)
