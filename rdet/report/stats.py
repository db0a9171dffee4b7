"""Seeds and spreads: one configuration's result over seeds, and a difference that says whether it
lies inside the seeds' spread.

A difference is ``outside`` (the two ranges [min, max] over seeds do not overlap: the only kind
the report highlights), ``inside`` (they overlap: not a finding), or ``one seed`` (neither side
has a spread, so nothing can be said about noise). A paper number is a range of one point (the
paper prints means of three trials without their spread).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from statistics import mean
from typing import Dict, Optional, Sequence

OUTSIDE, INSIDE, ONE_SEED, NOISE = "outside", "inside", "one seed", "within noise"


@dataclass
class ConfigResult:
    """One configuration's result over seeds (mean, min, max, seed count) and what it was."""

    eps: Optional[float]
    lr: Optional[float]
    mean: float
    lo: float
    hi: float
    n: int
    norm: Optional[str] = None
    method: Optional[str] = None
    source: Optional[str] = None
    extra: Dict[str, object] = field(default_factory=dict)

    @property
    def spread(self) -> float:
        return self.hi - self.lo

    @classmethod
    def of(cls, values: Sequence[float], **kw) -> "ConfigResult":
        v = [float(x) for x in values]
        return cls(mean=mean(v), lo=min(v), hi=max(v), n=len(v), **kw)


@dataclass
class Diff:
    """``a - b`` with both sides' seed counts and spreads."""

    value: float
    n: tuple  # (seeds of a, seeds of b); b = "paper" for a published number
    spreads: tuple  # (max - min of a, of b); None for a published number
    verdict: str  # OUTSIDE | INSIDE | ONE_SEED

    @property
    def highlight(self) -> bool:
        return self.verdict == OUTSIDE


def difference(a: Optional[ConfigResult], b) -> Optional[Diff]:
    """``a - b``; ``b`` a :class:`ConfigResult` or a published number (float). ``None`` if either
    side is missing."""
    if a is None or b is None:
        return None
    if isinstance(b, ConfigResult):
        b_lo, b_hi, b_n, b_spread, value = b.lo, b.hi, b.n, b.spread, a.mean - b.mean
    else:
        b_lo = b_hi = float(b)
        b_n, b_spread, value = "paper", None, a.mean - float(b)
    if a.n < 2 and (b_n == "paper" or b_n < 2):
        verdict = ONE_SEED
    else:
        verdict = INSIDE if a.lo <= b_hi and b_lo <= a.hi else OUTSIDE
    return Diff(value, (a.n, b_n), (a.spread, b_spread), verdict)


def difference_within(a: Optional[ConfigResult], b: Optional[float], band: float) -> Optional[Diff]:
    """``a - b`` against a published number measured with randomness rdet cannot replay (RobustBench's
    clock-seeded AutoAttack runs): a gap of at most ``band`` points is that run-to-run noise."""
    d = difference(a, b)
    if d is not None and abs(d.value) <= band:
        d.verdict = NOISE
        d.spreads = (d.spreads[0], band)
    return d


def diff_text(d: Optional[Diff]) -> str:
    """``**+7.00** (n 2 vs 2, spread 4.00 vs 2.00)``; inside the spread: ``+1.00 (inside the seed
    spread; ...)``, never bold; one seed each: ``+1.00 (1 seed: no spread)``."""
    if d is None:
        return "—"
    num = f"{d.value:+.2f}"
    if d.verdict == NOISE:
        return f"{num} (within the run-to-run noise band of ±{d.spreads[1]:.2f})"
    if d.verdict == ONE_SEED:
        return f"{num} (1 seed: no spread)"
    n_b = d.n[1] if d.n[1] == "paper" else f"{d.n[1]}"
    spread_b = "—" if d.spreads[1] is None else f"{d.spreads[1]:.2f}"
    detail = f"n {d.n[0]} vs {n_b}, spread {d.spreads[0]:.2f} vs {spread_b}"
    if d.verdict == INSIDE:
        return f"{num} (inside the seed spread; {detail})"
    return f"**{num}** ({detail})"


def result_text(c: Optional[ConfigResult]) -> str:
    """``81.00 [80.00, 82.00] (n=2)``: mean [min, max] over seeds."""
    if c is None:
        return "—"
    spread = f" [{c.lo:.2f}, {c.hi:.2f}]" if c.n > 1 else ""
    return f"{c.mean:.2f}{spread} (n={c.n})"

