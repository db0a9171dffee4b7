"""A capability added outside rdet is one kind module: its own config keys (with rules), its own
record fields and its own report section; it runs in a study and appears in the report, and no
rdet file changes. The kind here is defined in this test: a least-squares fit by gradient descent
(a real computation whose loss must fall with more steps)."""
import textwrap

import pytest
import torch
from fvcore.common.config import CfgNode

from rdet.config import build_config
from rdet.config.schema import SCHEMA, add_rules, at_least
from rdet.core.errors import ConfigError
from rdet.core.records import write_record
from rdet.report import build_report
from rdet.report.sections import SectionOutput, register_section, unregister_section
from rdet.study import Cell, TaskKind, register_kind, run_study
from rdet.study.base import unregister_kind
from rdet.study.spec import load_study


def _defaults() -> CfgNode:
    cfg = CfgNode()
    cfg.LSQ = CfgNode()
    cfg.LSQ.STEPS = 10
    cfg.LSQ.LR = 0.1
    cfg.OUTPUT_DIR = ""
    return cfg


class LeastSquares(TaskKind):
    """Least squares by gradient descent, one cell per step count."""
    name, section, order = "lsq", "lsq", 60

    def expand(self, section, ex):
        return [Cell(self.name, f"lsq/steps{n}", "transfer", {"steps": n, "opts": list(section.get("opts", []))})
                for n in section["steps"]]

    def config(self, cell, study):
        return build_config(_defaults(), None, None, cell.params["opts"] + [
            "LSQ.STEPS", str(cell.params["steps"]), "OUTPUT_DIR", str(cell.output_dir(study.output_dir))])

    def run(self, cell, study):
        cfg = self.config(cell, study)
        g = torch.Generator().manual_seed(0)
        x = torch.randn(64, 4, generator=g)
        y = x @ torch.tensor([1.0, -2.0, 0.5, 3.0])
        w = torch.zeros(4, requires_grad=True)
        for _ in range(cfg.LSQ.STEPS):
            loss = ((x @ w - y) ** 2).mean()
            (grad,) = torch.autograd.grad(loss, w)
            w = (w - cfg.LSQ.LR * grad).detach().requires_grad_(True)
        write_record(cfg.OUTPUT_DIR, {"task": "lsq", "steps": cfg.LSQ.STEPS,
                                      "lsq_loss": float(((x @ w - y) ** 2).mean())})


def _section(records, ctx):
    rows = sorted((r for r in records if r["task"] == "lsq"), key=lambda r: r["steps"])
    if not rows:
        return None
    return SectionOutput("\n## Least squares\n" + "".join(f"- {r['steps']} steps: loss {r['lsq_loss']:.4f}\n"
                                                            for r in rows))


@pytest.fixture
def lsq_kind():
    add_rules({"LSQ.STEPS": at_least(True, 1), "LSQ.LR": at_least(True, 0)})
    register_kind(LeastSquares())
    register_section("lsq", 70, tasks=("lsq",))(_section)
    yield
    unregister_kind("lsq")
    unregister_section("lsq")
    for k in ("LSQ.STEPS", "LSQ.LR"):
        SCHEMA.pop(k)


def _study(tmp_path, opts="[]"):
    path = tmp_path / "study.yaml"
    path.write_text(textwrap.dedent(f"""\
        output_dir: {tmp_path / 'out'}
        lsq: {{steps: [2, 40], opts: {opts}}}
        """))
    return path


def test_outside_kind_runs_in_a_study_and_reaches_the_report(tmp_path, lsq_kind):
    run_study(_study(tmp_path), console=False)
    md = build_report(tmp_path / "out")["markdown"]
    sec = md.split("## Least squares\n")[1]
    losses = [float(line.rsplit(" ", 1)[1]) for line in sec.strip().splitlines()[:2]]
    assert sec.startswith("- 2 steps: loss") and losses[1] < 0.01 * losses[0]
    assert "no registered section shows" not in md


def test_records_of_a_kind_whose_section_is_not_loaded_are_named(tmp_path, lsq_kind):
    run_study(_study(tmp_path), console=False)
    unregister_section("lsq")  # as if the kind's module had not been imported
    md = build_report(tmp_path / "out")["markdown"]
    assert "Records no registered section shows (import the module of their task kind): 2 of task 'lsq'" in md


def test_outside_kind_keys_are_checked_when_the_study_loads(tmp_path, lsq_kind):
    path = _study(tmp_path, "[LSQ.LR, -1.0]")
    with pytest.raises(ConfigError, match=r"cell lsq/steps2: LSQ.LR must be >= 0, not -1.0"):
        load_study(path)
    assert not (tmp_path / "out").exists()
