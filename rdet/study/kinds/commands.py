"""``commands``: arbitrary shell steps (data preparation, ...), ``{a}`` filled from a grid::

    commands:
      - {name: "prep_{a}", run: "echo {a}", grid: {a: [1, 2]}}

Each runs in its cell folder; a non-zero exit fails the cell."""
from __future__ import annotations

import itertools
import subprocess
import time

from rdet.core.errors import ConfigError
from rdet.core.records import write_record
from rdet.study.base import Cell, TaskKind, need, register_kind
from rdet.report.sections import SectionOutput, register_section


class Commands(TaskKind):
    """Shell steps (data preparation, ...), one cell per grid point, in the cell's folder."""
    name, section, order = "command", "commands", 0

    def expand(self, section, ex):
        cells = []
        for cmd in section or []:
            grid = (cmd.get("grid", {}) or {}) if isinstance(cmd, dict) else {}
            keys = list(grid)
            for values in itertools.product(*(grid[k] for k in keys)) if keys else [()]:
                sub = dict(zip(keys, values))
                cells.append(Cell(self.name, need(cmd, "name", "a command").format(**sub), "prepare",
                                  {"run": need(cmd, "run", "a command").format(**sub)}))
        return cells

    def run(self, cell, study):
        out = cell.output_dir(study.output_dir)
        out.mkdir(parents=True, exist_ok=True)
        start = time.time()
        proc = subprocess.run(cell.params["run"], shell=True, cwd=out)
        if proc.returncode:
            raise ConfigError(f"study cell {cell.name}: command exited {proc.returncode}: {cell.params['run']}")
        write_record(out, {"task": "command", "name": cell.name, "wall_time_s": time.time() - start})


register_kind(Commands())


# A command cell's record says only that it ran: its own section lists them (the report names every record).
@register_section("commands", 95, tasks=("command",))
def _commands(records, ctx):
    done = sorted(r["name"] for r in records if r.get("task") == "command" and r.get("name"))
    if not done:
        return None
    return SectionOutput("\n## Commands run\n" + "".join(f"- {n}\n" for n in done))
