"""``pretrain`` (backbones trained by ``rdet.tasks.pretrain``) and ``backbones`` (existing weights),
the two sections that provide the study's backbones::

    pretrain:
      config: configs/pretrain_demo.yaml
      opts: [SOLVER.EPOCHS, 2]
      archs: [resnet18, convnext_atto]   # optional axis: every run for every arch (MODEL.ARCH)
      runs: [{name: eps0, eps: 0}, {name: l2_eps1, eps: 1.0, norm: l2, arch: resnet50}]
    backbones:
      - {name: r50_l2_eps3, weights: resnet50_l2_eps3}       # a catalog name or a file

Architectures are any registry name (``python -m rdet backbones list``: torchvision CNNs and
timm's ConvNeXt, Swin, ViT families alike), checked when the study is read. With ``archs`` the
cells are ``pretrain/<arch>_<run>``, else ``pretrain/<run>``."""
from __future__ import annotations

from rdet.config import build_config, get_pretrain_cfg
from rdet.core.errors import ConfigError
from rdet.study.base import Backbone, Cell, TaskKind, need, register_kind, resolve_config
from rdet.report.sections import SectionOutput, register_section


def check_arch(arch, where: str) -> str:
    from rdet.backbones import get_spec

    try:
        get_spec(str(arch))
    except Exception as e:  # noqa: BLE001  (the registry's own one-line message)
        raise ConfigError(f"{where}: {str(e).splitlines()[0]}") from None
    return str(arch)


class Pretrain(TaskKind):
    """Backbones trained by ``rdet.tasks.pretrain`` (standard or adversarial), per arch x run."""
    name, section, order = "pretrain", "pretrain", 10

    def expand(self, pre, ex):
        cells = []
        archs = pre.get("archs") or [None]
        for run in need(pre, "runs", "pretrain"):
            label = need(run, "name", "a pretrain run")
            for arch in ([run["arch"]] if run.get("arch") else archs):
                opts = list(pre.get("opts", [])) + list(run.get("opts", []))
                if arch is not None:
                    opts += ["MODEL.ARCH", check_arch(arch, f"{ex.path}: pretrain run {label}")]
                bname = f"{arch}_{label}" if pre.get("archs") and not run.get("arch") else label
                name = f"pretrain/{bname}"
                cells.append(Cell(self.name, name, "pretrain",
                                  {"config": pre.get("config"), "opts": opts, "eps": float(run.get("eps", 0.0)),
                                   "norm": run.get("norm", "l2")}))
                ex.backbones.append(Backbone(bname, None, name, arch))
        return cells

    def config(self, cell, study):
        p = cell.params
        return build_config(get_pretrain_cfg(), resolve_config(study, p["config"]), None, list(p["opts"]) + [
            "ADV.EPS", str(p["eps"]), "ADV.NORM", p["norm"], "OUTPUT_DIR", str(cell.output_dir(study.output_dir))])

    def run(self, cell, study):
        from rdet.tasks import pretrain as task

        task.run(self.config(cell, study), resume=True)

    def summary(self, rec):
        rob = f", PGD top-1 {rec['robust_top1']:.2f}%" if rec.get("robust_top1") is not None else ""
        return f"clean top-1 {rec['value']:.2f}%{rob}"


class Backbones(TaskKind):
    """Existing weights; no cells of their own."""
    name, section, order = "backbones", "backbones", 20

    def expand(self, section, ex):
        for b in section or []:
            arch = check_arch(b["arch"], f"{ex.path}: backbone {b.get('name')}") if b.get("arch") else None
            ex.backbones.append(Backbone(need(b, "name", "a backbone"), need(b, "weights", "a backbone"), None, arch))
        return []


register_kind(Pretrain())
register_kind(Backbones())


# The report's section for this kind's records (rdet.report.sections: the report loops over them).
@register_section("pretrain", 20, tasks=("pretrain",))
def _pretrain(records, ctx):
    from rdet.report.markdown import pretrain_markdown
    from rdet.report.tables import pretrain_rows

    rows = pretrain_rows(records)
    if not rows:
        return None
    return SectionOutput("\n## Source models (pretraining)\n"
                         "Paper column: its Tables 3, 3b and 4 (clean ImageNet accuracy), for ImageNet runs.\n\n"
                         + pretrain_markdown(rows))
