"""Repeatability of the full default matrix: the same `mtls-matrix run` several times in a row.

    python bench/repeatability.py [--runs 5] [--keep DIR] [-- extra `mtls-matrix run` arguments]

Prints, per run, the wall time and the verdict counts; then the figure: the number of cells whose
verdict differed across the runs, not counting cells a run labelled FLAKY (with `-- --confirm 2`
for instance, a run already flags its own flaky cells), and lists them with their verdict per run.
Only verdicts count: the canonical error of a rejection may differ between runs of the same code
(under TLS 1.3 the server's TCP reset can overtake its alert), and the matrix promises verdicts.
Those canonical differences are counted and printed, not part of the figure.

A benchmark, not a test. Exit 0 whatever the figure; 2 when a run did not finish.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from mtls_matrix.results import canonical
from mtls_matrix.results import Cell, Results


def one_run(number: int, out: Path, extra: list[str]) -> list[Cell] | None:
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "mtls_matrix.cli", "run", "--out", str(out), *extra],
                          capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode not in (0, 1):  # 0/1: the run finished (1: findings with --strict, or an ERROR cell)
        print(f"run {number} did not finish (exit {proc.returncode}):\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}",
              file=sys.stderr)
        return None
    cells = Results.load(out / "results.json").cells
    counts = Counter(c.verdict.value for c in cells)
    flaky = sum(c.flaky for c in cells)
    print(f"run {number}: {len(cells)} cells in {wall:.1f} s wall: {dict(sorted(counts.items()))}"
          + (f"; {flaky} FLAKY" if flaky else ""), flush=True)
    return cells


def differing(runs: list[list[Cell]], key) -> dict[str, list[str]]:
    """Cell id -> key(cell) per run, for the cells where the key differed (a missing cell reads '-')."""
    per_run = [{c.id: c for c in cells} for cells in runs]
    ids = sorted(set().union(*per_run))
    seen = {i: [key(run[i]) if i in run else "-" for run in per_run] for i in ids}
    return {i: values for i, values in seen.items() if len(set(values)) > 1}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--keep", metavar="DIR", help="keep each run's output in DIR/run-N instead of a temp dir")
    parser.add_argument("extra", nargs="*", help="more `mtls-matrix run` arguments (after --)")
    args = parser.parse_args()
    if args.runs < 2:
        parser.error(f"--runs must be at least 2 to compare runs, got {args.runs}")
    command = " ".join(["mtls-matrix run", *args.extra])
    print(f"machine: {os.cpu_count()} cores; python {sys.version.split()[0]}; {args.runs} runs of `{command}`",
          flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(args.keep or tmp)
        runs = [one_run(n, base / f"run-{n}", args.extra) for n in range(1, args.runs + 1)]
    if any(r is None for r in runs):
        return 2
    report(runs)
    return 0


def report(runs: list[list[Cell]]) -> None:
    flaky = {c.id for cells in runs for c in cells if c.flaky}
    verdicts = {i: v for i, v in differing(runs, lambda c: c.verdict.value).items() if i not in flaky}
    canonicals = differing(runs, canonical)
    print(f"\ncells whose verdict differed across the {len(runs)} runs (FLAKY-labelled cells not counted): "
          f"{len(verdicts)}")
    for cell_id, values in verdicts.items():
        print(f"  {cell_id}: {' / '.join(values)}")
    print(f"cells labelled FLAKY by a run: {len(flaky)}" + "".join(f"\n  {i}" for i in sorted(flaky)))
    print(f"cells whose canonical error differed (not part of the figure): {len(canonicals)}")


if __name__ == "__main__":
    sys.exit(main())
