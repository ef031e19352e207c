"""Markdown cells for AUROCs that say how much data stands behind them.

Every AUROC a report prints carries its bootstrap interval and its n, the examples of each
side (adversarial / benign): ``0.970 (0.91–1.00, n=30/28)``. An AUROC from fewer than
:data:`SMOKE_TEST_BELOW` examples on either side gets :data:`SMOKE_MARK` after its value,
and :meth:`AurocCells.banner` gives the line for the top of the report that explains it,
so a ``--quick`` table is never read as a reproduction. :func:`markdown_table` and
:func:`number_cell` build the rest of a report's tables; :data:`AUROC_INTERVAL` says, in a
``results.json``, how its intervals were made.

Example:
    >>> cells = AurocCells()
    >>> cells.format({"auroc": 0.97, "auroc_ci": [0.912, 1.0], "n_adversarial": 30, "n_benign": 28})
    '0.970 (0.91–1.00, n=30/28)'
    >>> cells.format({"auroc": 1.0, "auroc_ci": [1.0, 1.0], "n_adversarial": 3, "n_benign": 2}, bold=True)
    '**1.000**† (1.00–1.00, n=3/2)'
    >>> cells.small, cells.total
    (1, 2)
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

from .detection import AUROC_CI_LEVEL, AUROC_CI_RESAMPLES, AUROC_CI_SEED

#: Fewer examples than this on either side make an AUROC a smoke test.
SMOKE_TEST_BELOW = 20
#: Marks an AUROC from fewer than :data:`SMOKE_TEST_BELOW` examples a side.
SMOKE_MARK = "†"
#: How every ``auroc_ci`` of a ``results.json`` was made (each cell also has ``n_adversarial`` and ``n_benign``).
AUROC_INTERVAL = {"method": "percentile bootstrap over examples, each side resampled separately",
                  "level": AUROC_CI_LEVEL, "n_resamples": AUROC_CI_RESAMPLES, "seed": AUROC_CI_SEED,
                  "smoke_test_below": SMOKE_TEST_BELOW}


def _number(value) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def is_small_sample(n_adversarial, n_benign) -> bool:
    """Whether either side has fewer than :data:`SMOKE_TEST_BELOW` examples.

    Example:
        >>> is_small_sample(25, 19), is_small_sample(20, 20)
        (True, False)
    """
    return min(int(n_adversarial or 0), int(n_benign or 0)) < SMOKE_TEST_BELOW


def auroc_legend() -> str:
    """The sentence that explains an AUROC cell.

    Example:
        >>> auroc_legend().startswith("AUROC cells: value (95 % bootstrap interval")
        True
    """
    return (f"AUROC cells: value ({100 * AUROC_CI_LEVEL:g} % bootstrap interval, n = adversarial/benign examples); "
            f"{SMOKE_MARK} marks fewer than {SMOKE_TEST_BELOW} examples a side.")


def number_cell(value, *, percent: bool = False) -> str:
    """A number for a table: three decimals, or a percentage with one; ``–`` when missing or NaN.

    Example:
        >>> number_cell(0.97251), number_cell(0.5, percent=True), number_cell(None), number_cell(math.nan)
        ('0.973', '50.0', '–', '–')
    """
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{100 * value:.1f}" if percent else f"{value:.3f}"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """The lines of a Markdown table (an empty cell is written as one space).

    Example:
        >>> print("\\n".join(markdown_table(["", "AUROC"], [["ours", "0.970"]])))
        | | AUROC |
        |---|---|
        | ours | 0.970 |
    """
    def line(cells: Sequence[str]) -> str:
        return "|" + "|".join(f" {cell} " if cell else " " for cell in cells) + "|"

    return [line(header), "|" + "---|" * len(header), *(line(row) for row in rows)]


class AurocCells:
    """Formats AUROC cells and counts how many rest on small samples, for the banner."""

    def __init__(self):
        self.total = 0
        self.small = 0

    def cell(self, value, interval: Sequence | None, n_adversarial, n_benign, *, bold: bool = False) -> str:
        """``value (low–high, n=adversarial/benign)``; ``–`` when there is no value.

        Example:
            >>> AurocCells().cell(0.5, None, 4, 4)
            '0.500† (no interval, n=4/4)'
        """
        value = _number(value)
        if value is None:
            return "–"
        self.total += 1
        small = is_small_sample(n_adversarial, n_benign)
        self.small += small
        low, high = (_number(x) for x in (interval or (None, None)))
        spread = "no interval" if low is None or high is None else f"{low:.2f}–{high:.2f}"
        text = f"**{value:.3f}**" if bold else f"{value:.3f}"
        return f"{text}{SMOKE_MARK if small else ''} ({spread}, n={int(n_adversarial or 0)}/{int(n_benign or 0)})"

    def format(self, metrics: Mapping | None, *, bold: bool = False) -> str:
        """A cell from a metrics dict with ``auroc``, ``auroc_ci``, ``n_adversarial`` and ``n_benign``."""
        metrics = metrics or {}
        return self.cell(metrics.get("auroc"), metrics.get("auroc_ci"), metrics.get("n_adversarial"),
                         metrics.get("n_benign"), bold=bold)

    def banner(self, *, quick: bool) -> list[str]:
        """Lines for the top of a report: a smoke-test warning when it is one, and the legend.

        Example:
            >>> cells = AurocCells()
            >>> _ = cells.cell(0.9, [0.5, 1.0], 3, 3)
            >>> cells.banner(quick=True)[0].startswith("> **Smoke test, not a reproduction.**")
            True
        """
        small = f"{self.small} of {self.total} AUROCs rest on fewer than {SMOKE_TEST_BELOW} examples a side " \
                f"(marked {SMOKE_MARK})"
        if quick or (self.total and self.small == self.total):
            why = "a `--quick` run: small sets and short attacks" if quick else "small sets"
            lines = [f"> **Smoke test, not a reproduction.** This is {why}; {small}. It checks that the pipeline "
                     "runs; its numbers say little, as the wide intervals show."]
        elif self.small:
            lines = [f"> **Small samples:** {small}; read those as smoke tests, not reproductions."]
        else:
            lines = []
        return lines + ["", auroc_legend(), ""]


__all__ = ["AUROC_INTERVAL", "SMOKE_MARK", "SMOKE_TEST_BELOW", "AurocCells", "auroc_legend", "is_small_sample",
           "markdown_table", "number_cell"]
