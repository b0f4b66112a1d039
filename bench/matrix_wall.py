"""Wall time of the full default matrix, as `tox -e matrix` runs it (pytest-xdist, all cores).

    python bench/matrix_wall.py [--runs N] [-- extra `mtls-matrix run` arguments]

Prints cells, verdict counts and wall seconds per run. A benchmark, not a test: speed is
reported here, never asserted in the test suite.
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

from mtls_matrix.results import Results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("extra", nargs="*", help="more `mtls-matrix run` arguments")
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} cores; python {sys.version.split()[0]}")
    for run in range(1, args.runs + 1):
        with tempfile.TemporaryDirectory() as out:
            start = time.perf_counter()
            proc = subprocess.run([sys.executable, "-m", "mtls_matrix.cli", "run", "--out", out, *args.extra],
                                  capture_output=True, text=True)
            wall = time.perf_counter() - start
            if proc.returncode not in (0, 1):
                print(proc.stdout[-2000:], proc.stderr[-2000:], file=sys.stderr)
                return proc.returncode
            cells = Results.load(Path(out) / "results.json").cells
        counts = Counter(c.verdict.value for c in cells)
        print(f"run {run}: {len(cells)} cells in {wall:.1f} s wall "
              f"({len(cells) / wall:.0f} cells/s): {dict(sorted(counts.items()))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
