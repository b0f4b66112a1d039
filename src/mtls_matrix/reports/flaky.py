"""BUGS.md's "Repeatability" section: the cells whose runs disagreed (--repeat, --confirm).

FLAKY cells are listed here with their rates and left out of the regular findings: a finding
groups cells by one stable signature, and a cell that is PASS one run and FAIL the next has none.
"""

from __future__ import annotations

from collections import Counter
from typing import Sequence

from mtls_matrix.repeat import rate_text
from mtls_matrix.results import Cell

SYMBOLS = {"PASS": "✅", "INSECURE": "🔓", "FAIL": "❌", "HANG": "⏳", "UNSUPPORTED": "➖", "ERROR": "💥", "SKIPPED": "⏭️"}


def flaky_cells(cells: Sequence[Cell]) -> list[Cell]:
    return [c for c in cells if c.flaky]


def title_note(cells: Sequence[Cell]) -> str:
    """A sentence for the report's title line, so a FLAKY cell cannot go unnoticed."""
    flaky = flaky_cells(cells)
    if not flaky:
        return ""
    return f" **{len(flaky)} FLAKY {'cell' if len(flaky) == 1 else 'cells'}** (verdict varied between runs)."


def render(cells: Sequence[Cell]) -> list[str]:
    """Nothing when no cell ran more than once."""
    repeated = [c for c in cells if c.runs]
    if not repeated:
        return []
    lines = ["## Repeatability", "", _how_ran(repeated, len(cells)), ""]
    flaky = flaky_cells(cells)
    if not flaky:
        return lines + ["No cell is FLAKY: every cell that ran more than once reached the same verdict each time.", ""]
    lines += [f"**{len(flaky)} FLAKY {'cell' if len(flaky) == 1 else 'cells'}**: the runs reached different "
              "verdicts. The verdict shown elsewhere is the first run's; these cells are not in the findings "
              "below. A FLAKY cell is KNOWN when one of its runs is a known issue (baseline).", "",
              "| cell | pass rate | runs | in order | baseline |", "|---|---|---|---|---|"]
    lines += [_row(c) for c in flaky]
    return lines + [""]


def _how_ran(repeated: list[Cell], total: int) -> str:
    counts = Counter(c.runs.count for c in repeated)
    spread = ", ".join(f"{n} {'cell' if n == 1 else 'cells'} × {runs} runs" for runs, n in sorted(counts.items()))
    modes = sorted({c.runs.mode for c in repeated})
    return f"{len(repeated)} of {total} cells ran more than once ({', '.join(modes)}): {spread}."


def _row(cell: Cell) -> str:
    order = " ".join(SYMBOLS.get(run.verdict.value, "?") for run in cell.runs.each)
    return (f"| `{cell.id}` | {cell.runs.pass_rate:.0%} | {rate_text(cell)} | {order} | "
            f"{cell.baseline or '—'} |")
