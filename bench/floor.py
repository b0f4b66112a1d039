"""The full default matrix's wall time against its floor, and where the matrix's time goes.

    python bench/floor.py [--reps N] [--results FILE | --keep DIR] [-- extra `mtls-matrix run` arguments]

The floor: one bare asyncio + ssl mutual-TLS handshake plus one small echo over 127.0.0.1
(mtls_matrix.floor's server and contexts: a throwaway CA, a client certificate required),
timed over N repetitions, times the matrix's number of cells, divided by the cores. It is what
the matrix would cost if every cell were nothing but its connection. Measured first, on a quiet
machine; then the matrix runs as `tox -e matrix` runs it (`mtls-matrix run --baseline`, all cores).

Prints both wall times, their ratio (issue 6's goal: under 3, the matrix under 30 s on 2 cores),
the wall split into waits, the libraries' own work, the harness and the rest (and the ratio the
first two alone come to), then the sum of cell totals by scenario group and by client, and the 10
slowest cells: what a future speed-up should target. A benchmark, not a test: nothing here asserts a speed.
`--results FILE` reads an existing run instead of running the matrix (its duration_s as the wall).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

from mtls_matrix import floor
from mtls_matrix.pki import PKI
from mtls_matrix.results import Cell, Results, Verdict
from mtls_matrix.scenarios import HOSTILE_GROUPS

SMALL = b"mtls-matrix floor echo"
BASELINE = str(Path(__file__).resolve().parent.parent / "matrix" / "baseline.toml")


def cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


async def _exchange(port: int, client_ctx) -> None:
    """What the cheapest cell does: connect, mutual handshake, one small echo, close."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client_ctx, server_hostname="localhost")
    writer.write(SMALL)
    if await reader.readexactly(len(SMALL)) != SMALL:
        raise RuntimeError("the floor echo came back different")
    writer.close()
    await writer.wait_closed()


async def _per_exchange_s(reps: int) -> float:
    with PKI() as pki:
        server_ctx, client_ctx = floor.contexts(pki)
        async with floor.echo_server(server_ctx) as port:
            await _exchange(port, client_ctx)  # warm-up
            start = time.perf_counter()
            for _ in range(reps):
                await _exchange(port, client_ctx)
            return (time.perf_counter() - start) / reps


def run_matrix(extra: list[str], keep: str | None = None) -> tuple[Results, float]:
    with tempfile.TemporaryDirectory() as scratch:
        out = keep or scratch
        start = time.perf_counter()
        # with the baseline, as `tox -e matrix` runs it: its known findings are xfails, not failures
        # whose report sections pytest builds at the end
        proc = subprocess.run([sys.executable, "-m", "mtls_matrix.cli", "run", "--out", out, "--baseline", BASELINE, *extra],
                              capture_output=True, text=True)
        wall = time.perf_counter() - start
        if proc.returncode not in (0, 1):  # 1: findings, which a full matrix has
            sys.exit(f"mtls-matrix run failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
        return Results.load(Path(out) / "results.json"), wall


def total_s(cell: Cell) -> float:
    return cell.timings.get("total", 0.0) / 1000


def cell_s(cell: Cell) -> float:
    return cell.timings.get("cell", 0.0) / 1000


def print_sums(title: str, cells: list[Cell], key, top: int | None = None) -> None:
    sums, counts = defaultdict(float), Counter(key(c) for c in cells)
    for c in cells:
        sums[key(c)] += total_s(c)
    everything = sum(sums.values()) or 1.0
    print(f"\ncell totals by {title}{f' (top {top})' if top else ''}:")
    for name, s in sorted(sums.items(), key=lambda kv: -kv[1])[:top]:
        print(f"  {name:42} {s:6.1f} s {100 * s / everything:5.1f} %  {counts[name]:5} cells  "
              f"{1000 * s / counts[name]:6.1f} ms/cell")


def print_runner_budget(results: Results, wall: float) -> float | None:
    """The workers' time split into what a speed-up could target: waits by design (HANG cells sit
    out their deadline), the libraries' own work (client totals), the harness around each client
    (`cell` minus `total`: server starts, settling the server's side, counting leaks) and, the
    rest of the wall, pytest's per-item work, startup and reporting. Hostile cells run in the
    background (hostile.Batch) and cost their worker nothing here."""
    workers = results.run.workers or 1
    foreground = [c for c in results.cells if c.group not in HOSTILE_GROUPS]
    if not all("cell" in c.timings for c in foreground):
        print("\n(no `cell` timings in these results: a run from before they were recorded)")
        return None
    hang = sum(cell_s(c) for c in foreground if c.verdict == Verdict.HANG)
    library = sum(total_s(c) for c in foreground if c.verdict != Verdict.HANG)
    harness = sum(cell_s(c) - total_s(c) for c in foreground if c.verdict != Verdict.HANG)
    rest = wall - (hang + library + harness) / workers
    print(f"\nthe {wall:.1f} s wall, per worker ({workers}), foreground cells (the hostile ones run in the background):")
    for name, s in (("waits by design (HANG cells' deadlines)", hang / workers),
                    ("libraries' own work (client totals)", library / workers),
                    ("harness around the clients (cell - total)", harness / workers),
                    ("the rest: pytest per item, startup, reporting", rest)):
        print(f"  {name:48} {s:6.1f} s {100 * s / wall:5.1f} %")
    return (hang + library) / workers


def print_bound(budget_s: float, floor_wall: float) -> None:
    """What no harness change can go below: the waits and the libraries' own work, against the floor
    (which is one handshake and one small echo per cell, whatever the cell's I/O script)."""
    print(f"\nwaits + libraries' own work alone: {budget_s:.1f} s per worker = {budget_s / floor_wall:.1f} x the floor "
          f"wall: the lowest ratio this matrix can reach with the harness costing nothing")


def print_where_time_goes(results: Results, wall: float, floor_wall: float) -> None:
    cells, workers = results.cells, results.run.workers or 1
    busy = sum(total_s(c) for c in cells)
    bound = print_runner_budget(results, wall)
    if bound is not None:
        print_bound(bound, floor_wall)
    print(f"\nsum of cell totals {busy:.1f} s over {workers} workers = {busy / workers:.1f} s each "
          f"(hostile cells included, which overlap in the background)")
    print_sums("scenario group", cells, lambda c: c.group)
    print_sums("scenario and profile", cells, lambda c: f"{c.scenario} {c.profile}", top=6)
    print_sums("client", cells, lambda c: c.client)
    print("\n10 slowest cells:")
    for c in sorted(cells, key=total_s, reverse=True)[:10]:
        print(f"  {total_s(c):6.2f} s  {c.verdict.value:11} {c.id}  ({c.phase}: {c.reason[:70]})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=300, help="floor repetitions (default 300)")
    parser.add_argument("--results", metavar="FILE", help="analyse this results.json instead of running the matrix")
    parser.add_argument("--keep", metavar="DIR", help="write the matrix's results.json there (default: a temp dir)")
    parser.add_argument("extra", nargs="*", help="more `mtls-matrix run` arguments")
    args = parser.parse_args()
    n = cores()
    # a shared machine: a busy start means the figures below are inflated, rerun when it is quiet
    print(f"machine: {n} cores; python {sys.version.split()[0]}; load average {os.getloadavg()[0]:.2f} at start")
    per_cell = asyncio.run(_per_exchange_s(args.reps))
    print(f"floor: {1000 * per_cell:.2f} ms per bare mTLS handshake + small echo (mean of {args.reps})")
    if args.results:
        results = Results.load(args.results)
        wall = results.run.duration_s or 0.0
    else:
        results, wall = run_matrix(args.extra, args.keep)
    cells = len(results.cells)
    floor_wall = per_cell * cells / n
    verdicts = dict(sorted(Counter(c.verdict.value for c in results.cells).items()))
    source = f"duration_s of {args.results}" if args.results else f"the pytest session itself: {results.run.duration_s} s"
    print(f"matrix: {cells} cells in {wall:.1f} s wall ({source}): {verdicts}")
    print(f"floor wall: {floor_wall:.2f} s ({cells} cells x {1000 * per_cell:.2f} ms / {n} cores)")
    print(f"ratio matrix / floor: {wall / floor_wall:.1f}")
    print_where_time_goes(results, wall, floor_wall)
    return 0


if __name__ == "__main__":
    sys.exit(main())
