"""Repeatability: run one cell several times inside its one pytest item and say whether it agreed.

`--repeat N` runs every cell N times; `--confirm N` reruns a cell N more times when its first run
was not PASS (FAIL, INSECURE, HANG, ERROR; an UNSUPPORTED cell is declared, never observed, so
rerunning it proves nothing). Both may be given: a cell then runs N times, plus the confirmation
runs when its first run failed.

With a baseline (`--baseline`: `tox -e matrix`, the nightly) a cell whose first run would be a NEW
finding is confirmed by at least CONFIRM_NEW more runs whatever --confirm says: it is NEW only if
every run failed alike; runs that disagree make it FLAKY, which the baseline does not count as NEW.

The runs are full, real cell runs (`cell.run_cell`), back to back, so pytest ids and item counts
stay what a plain run has and pytest-xdist spreads cells, not repeats.

Rules (docs/ARCHITECTURE.md):
- The cell's verdict and every detail (phase, error, timings) are its **first** run's: exactly
  what a plain run reports, so a run with --repeat still diffs cleanly against one without, and
  no "majority" or "worst" rule invents an outcome no single run had.
- `runs` records every run (verdict, phase, canonical error, time), the verdict counts and the
  pass rate (PASS runs / runs).
- The cell is **FLAKY** (`flaky: true`) when its runs reached more than one verdict. A differing
  canonical error alone (the TLS 1.3 alert-vs-reset race) is not flakiness: verdicts are what
  the matrix promises.
"""

from __future__ import annotations

from collections import Counter
from typing import Callable

from mtls_matrix.results import Cell, RunOutcome, Runs, Verdict, canonical
from mtls_matrix.timing import HARNESS_HANG_STRETCH

CONFIRMED = {Verdict.FAIL, Verdict.INSECURE, Verdict.HANG, Verdict.ERROR}  # what --confirm reruns
CONFIRM_NEW = 2  # the fewest reruns of a cell that would be NEW against the baseline
MAX_RUNS = 1000  # of one cell: enough for a pass rate, not a run that never ends


def check(repeat: int, confirm: int) -> None:
    """Raises ValueError naming the bad option: a usage error (exit 2) for the CLI and pytest."""
    if repeat < 1:
        raise ValueError(f"--repeat must be a whole number of runs, at least 1, got {repeat}")
    if confirm < 0:
        raise ValueError(f"--confirm must be a whole number of extra runs, 0 or more, got {confirm}")
    for option, runs in (("--repeat", repeat), ("--confirm", confirm)):
        if runs > MAX_RUNS:
            raise ValueError(f"{option} must be at most {MAX_RUNS} runs, got {runs}")


def rerun_deadline(first: Cell, deadline: float) -> float:
    """The deadline the reruns of a cell get, after its first run."""
    decided_by_harness = first.deadline is not None and first.deadline.source == "harness"
    return deadline * HARNESS_HANG_STRETCH if first.verdict is Verdict.HANG and decided_by_harness else deadline


def run_repeated(run_once: Callable[[], Cell], repeat: int = 1, confirm: int = 0,
                 would_be_new: Callable[[Cell], bool] | None = None,
                 run_more: Callable[[Cell, int], list[Cell]] | None = None) -> Cell:
    """The first run's cell, with `runs` and `flaky` filled in when it ran more than once.
    `would_be_new`: whether a run, alone, would be a NEW finding (baseline.classify_cell);
    `run_more(first, n)`: n more runs after `first` (side by side for a cell that mostly waits; with
    rerun_deadline for one the harness's deadline decided)."""
    first = run_once()
    extra = confirm if first.verdict in CONFIRMED else 0
    if would_be_new is not None and would_be_new(first):
        extra = max(extra, CONFIRM_NEW)
    if repeat == 1 and not extra:
        return first
    more = repeat - 1 + extra
    cells = [first] + (run_more(first, more) if run_more is not None else [run_once() for _ in range(more)])
    mode = "repeat+confirm" if repeat > 1 and extra else "repeat" if repeat > 1 else "confirm"
    return summarise(cells, mode)


def summarise(cells: list[Cell], mode: str) -> Cell:
    first = cells[0]
    tally = Counter(c.verdict.value for c in cells)
    first.runs = Runs(
        mode=mode, count=len(cells), verdicts=dict(tally),
        pass_rate=round(tally[Verdict.PASS.value] / len(cells), 4),
        each=[outcome(c) for c in cells],
    )
    first.flaky = len(tally) > 1
    return first


def outcome(cell: Cell) -> RunOutcome:
    return RunOutcome(verdict=cell.verdict, phase=cell.phase, canonical=canonical(cell), ms=cell.timings.get("total"))


def outcomes(cell: Cell) -> list[RunOutcome]:
    """Every run of a cell, also of one that ran once."""
    return list(cell.runs.each) if cell.runs else [outcome(cell)]


