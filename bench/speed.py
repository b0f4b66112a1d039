"""The matrix's speed against issue 17's goals, in one run.

    python bench/speed.py [--runs N] [--skip-full | --full-results FILE] [--keep DIR]

Prints, each against its goal:

- one cell: `mtls-matrix run --servers websockets --clients websockets --scenarios mtls-ok`, from
  the command to results.json (wall and CPU of the whole process tree), median of --runs; goal 1.0 s;
- the slice: 312 cells (the servers websockets, aiohttp, tornado and socketio-aiohttp; clients
  websockets, aiohttp, tornado, websocket-client and four socket.io client/transport variants; the
  scenarios SLICE_SCENARIOS) as `mtls-matrix run` runs them (all cores), paired run by run with the
  plain harness (bench/plain.py: 288 cells, one process, one core): wall, CPU, CPU per cell of
  both, the medians of --runs pairs and the median of the pairs' CPU-per-cell ratios; goals 5 s wall
  on 2 cores and 21 ms CPU per cell (the plain harness's figure when the issue was written);
- the full default matrix, as `tox -e matrix` runs it (`--baseline matrix/baseline.toml`): its wall
  (goal 60 s on 2 cores) and where its time goes (`--skip-full` leaves it out: it takes minutes;
  `--full-results FILE` reads a finished run's results.json instead);
- the harness overhead of each run (goal 1.25) and its per-scenario floor (bench/floor.py).

**Harness overhead** = wall x cores / W, where W, the libraries' own measured work, is the sum
over the run's cells of `timings.total` from its results.json: the client's run in that cell, from
the moment its thread starts (before the client builds its TLS settings) to the end of its close,
measured by the runner around the client alone. The server's part of the connection (its handshake,
upgrade, handler, echoes) happens inside that interval, on its own thread or process, so it is
included; what is not: starting listeners and processes, the pytest item, waiting for the server's
side to settle, counting leaks, judging, recording. The hostile cells run side by side, all of a
batch at once (mtls_matrix.hostile): a batch counts as its longest cell. A cell that waits (a HANG,
a library timer) counts its wait: the library made it. The plain harness measures its cells the
same way (bench/plain.py: the client's run, TLS settings to close), so its own figure, wall / W on
its one core, is what a harness with nothing around its cells comes to.

The matrix is timed as installed: its modules compiled to bytecode first, as pip leaves them (a
checkout's editable install under PYTHONDONTWRITEBYTECODE, as tox.ini sets, compiles them in every
process of every run: 0.3 s of the one cell's 1 s).

A benchmark, never a test: it asserts nothing and exits 0 whatever the figures.
"""

from __future__ import annotations

import argparse
import compileall
import datetime as dt
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

import floor  # bench/floor.py and bench/orphans.py, next to this script
import orphans
import mtls_matrix
from mtls_matrix.results import Cell, Results, Verdict
from mtls_matrix.scenarios import HOSTILE_GROUPS

BENCH = Path(__file__).resolve().parent
BASELINE = BENCH.parent / "matrix" / "baseline.toml"
ONE_CELL = ["--servers", "websockets", "--clients", "websockets", "--scenarios", "mtls-ok"]
SLICE_SERVERS = "websockets,aiohttp,tornado,socketio-aiohttp"
SLICE_CLIENTS = ",".join([
    "websockets", "aiohttp[ssl=context]", "tornado[ssl_options=context]", "websocket-client[sslopt=context]",
    "socketio-asyncclient[http_session=connector+polling]", "socketio-asyncclient[http_session=connector+websocket]",
    "socketio-client[http_session=requests+polling]", "socketio-client[http_session=requests+websocket]",
])
SLICE_SCENARIOS = ",".join([
    "mtls-ok", "ip-url", "tls12-only",
    *(f"{name}{cap}" for name in ("client-untrusted-ca", "client-expired", "client-wrong-eku", "client-no-cert",
                                  "server-untrusted-ca", "server-wrong-host", "server-expired")
      for cap in ("", "-tls12")),
    "io-text", "io-binary", "io-1mib",
])
SLICE = ["--servers", SLICE_SERVERS, "--clients", SLICE_CLIENTS, "--scenarios", SLICE_SCENARIOS]
GOAL_ONE_CELL_S = 1.0
GOAL_SLICE_WALL_S = 5.0
GOAL_SLICE_CPU_MS = 21.0
GOAL_FULL_WALL_S = 60.0
GOAL_OVERHEAD = 1.25


def cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


@dataclass
class Timed:
    wall: float
    cpu: float  # user + system of the command and every process it waited for
    results: Results | None = None  # a matrix run's
    plain: dict | None = None  # bench/plain.py's own figures


def timed(command: list[str]) -> Timed:
    """Run one command to its end: its wall time, and its CPU time from the kernel's accounting of
    the processes this one reaped (one command at a time, so they are its tree's, orphans included:
    bench/orphans.py)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - start
    for left in orphans.reap():
        print(f"  left running after the command, killed: {left}", flush=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode not in (0, 1):  # 1: findings or failing cells, which a matrix run has
        sys.exit(f"{' '.join(command[:5])}... failed ({proc.returncode}):\n"
                 f"{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return Timed(wall, cpu)


def matrix(args: list[str], out: Path) -> Timed:
    run = timed([sys.executable, "-m", "mtls_matrix.cli", "run", "--out", str(out), *args])
    run.results = Results.load(out / "results.json")
    return run


def plain(out: Path) -> Timed:
    run = timed([sys.executable, str(BENCH / "plain.py"), "--json", str(out)])
    run.plain = json.loads(out.read_text())
    return run


def total_s(cell: Cell) -> float:
    return cell.timings.get("total", 0.0) / 1000


def work_s(results: Results) -> float:
    """W of the module docstring: the cells' `total`s, a hostile batch counted as its longest cell."""
    foreign = {p.name for p in results.run.peers if p.foreign}
    batches: dict[bool, float] = defaultdict(float)
    work = 0.0
    for cell in results.cells:
        if cell.group in HOSTILE_GROUPS:
            batch = cell.server in foreign or cell.client in foreign
            batches[batch] = max(batches[batch], total_s(cell))
        else:
            work += total_s(cell)
    return work + sum(batches.values())


def overhead(run: Timed) -> float:
    return run.wall * cores() / work_s(run.results)


def floor_s(results: Results, floors: dict[str, floor.Floor]) -> float:
    """The sum of the run's cells' floors, CPU seconds (hostile cells have none)."""
    return sum(floors[c.scenario].cpu_s for c in results.cells if c.scenario in floors)


def verdicts(results: Results) -> str:
    counts = Counter(c.verdict.value for c in results.cells)
    return ", ".join(f"{n} {v}" for v, n in sorted(counts.items()))


def med(values) -> float:
    return statistics.median(list(values))


def one_cell(runs: int, scratch: Path) -> list[Timed]:
    print(f"\none cell: mtls-matrix run {' '.join(ONE_CELL)}", flush=True)
    done = []
    for n in range(runs):
        run = matrix(ONE_CELL, scratch / f"one-{n}")
        print(f"  run {n + 1}: {run.wall:6.2f} s wall {run.cpu:6.2f} s CPU  ({verdicts(run.results)})", flush=True)
        done.append(run)
    return done


def slice_vs_plain(runs: int, scratch: Path) -> list[tuple[Timed, Timed]]:
    print(f"\nthe slice (`mtls-matrix run` {' '.join(SLICE)}) paired with the plain harness (bench/plain.py)",
          flush=True)
    pairs = []
    for n in range(runs):
        a = matrix(SLICE, scratch / f"slice-{n}")
        b = plain(scratch / f"plain-{n}.json")
        cells, plain_cells = len(a.results.cells), b.plain["cells"]
        print(f"  pair {n + 1}: slice {cells} cells {a.wall:6.2f} s wall {a.cpu:6.2f} s CPU "
              f"{1000 * a.cpu / cells:5.1f} ms/cell ({verdicts(a.results)}); plain {plain_cells} cells "
              f"{b.wall:6.2f} s wall {b.cpu:6.2f} s CPU {1000 * b.cpu / plain_cells:5.1f} ms/cell "
              f"({b.plain['problems']} not as mutual TLS must)", flush=True)
        pairs.append((a, b))
    return pairs


def where_time_goes(results: Results, wall: float) -> None:
    """The full matrix's wall split into waits, the libraries' work and the rest; the sums by group
    and by client; the slowest cells: what a speed-up should target."""
    cells, workers = results.cells, results.run.workers or 1
    foreground = [c for c in cells if c.group not in HOSTILE_GROUPS]
    waits = sum(total_s(c) for c in foreground if c.verdict == Verdict.HANG)
    library = sum(total_s(c) for c in foreground if c.verdict != Verdict.HANG)
    around = sum(c.timings.get("cell", 0.0) / 1000 - total_s(c) for c in foreground if "cell" in c.timings)
    print(f"  per worker ({workers} workers), the foreground cells (the hostile ones run in the background):")
    for name, seconds in (("waits (HANG cells' totals)", waits), ("libraries' own work (the other totals)", library),
                          ("harness around the clients (cell - total)", around)):
        print(f"    {name:44} {seconds / workers:7.1f} s {100 * seconds / workers / wall:5.1f} % of the wall")
    for title, key, top in (("scenario group", lambda c: c.group, None), ("client", lambda c: c.client, 12),
                            ("server", lambda c: c.server, 12)):
        sums, counts = defaultdict(float), Counter(key(c) for c in cells)
        for c in cells:
            sums[key(c)] += total_s(c)
        print(f"  cell totals by {title}{f' (top {top})' if top else ''}:")
        for name, seconds in sorted(sums.items(), key=lambda kv: -kv[1])[:top]:
            print(f"    {name:56} {seconds:7.1f} s {counts[name]:5} cells "
                  f"{1000 * seconds / counts[name]:7.1f} ms/cell")
    print("  the 10 slowest cells:")
    for c in sorted(cells, key=total_s, reverse=True)[:10]:
        print(f"    {total_s(c):6.2f} s  {c.verdict.value:11} {c.id}")


def full_matrix(scratch: Path, results_file: str | None) -> Timed:
    if results_file:
        results = Results.load(results_file)
        print(f"\nthe full matrix: {results_file} (its duration_s as the wall)", flush=True)
        return Timed(results.run.duration_s or 0.0, float("nan"), results)
    print("\nthe full default matrix (`mtls-matrix run --baseline matrix/baseline.toml`, as tox -e matrix)", flush=True)
    run = matrix(["--baseline", str(BASELINE)], scratch / "full")
    print(f"  {len(run.results.cells)} cells in {run.wall:.1f} s wall, {run.cpu:.1f} s CPU ({verdicts(run.results)})")
    return run


def figures(ones: list[Timed], slices: list[Timed], plains: list[Timed], whole: Timed | None,
            floors: dict[str, floor.Floor]) -> list[tuple[str, str, str, bool | None]]:
    """(figure, measured, goal, met: None where there is no goal), medians over the runs."""
    n, cells, plain_cells = cores(), len(slices[0].results.cells), plains[0].plain["cells"]
    one_wall, slice_wall = med(r.wall for r in ones), med(a.wall for a in slices)
    slice_ms, plain_ms = med(1000 * a.cpu / cells for a in slices), med(1000 * b.cpu / plain_cells for b in plains)
    slice_overhead = med(overhead(a) for a in slices)
    slice_floor = floor_s(slices[0].results, floors) / n
    rows = [
        ("one cell, wall", f"{one_wall:.2f} s", f"<= {GOAL_ONE_CELL_S:g} s", one_wall <= GOAL_ONE_CELL_S),
        ("one cell, CPU", f"{med(r.cpu for r in ones):.2f} s", "", None),
        (f"slice ({cells} cells), wall", f"{slice_wall:.2f} s", f"<= {GOAL_SLICE_WALL_S:g} s on 2 cores",
         slice_wall <= GOAL_SLICE_WALL_S),
        ("slice, CPU", f"{med(a.cpu for a in slices):.2f} s", "", None),
        ("slice, CPU per cell", f"{slice_ms:.1f} ms", f"<= {GOAL_SLICE_CPU_MS:g} ms", slice_ms <= GOAL_SLICE_CPU_MS),
        (f"plain harness ({plain_cells} cells, 1 core), wall", f"{med(b.wall for b in plains):.2f} s", "", None),
        ("plain harness, CPU", f"{med(b.cpu for b in plains):.2f} s", "", None),
        ("plain harness, CPU per cell", f"{plain_ms:.1f} ms", "", None),
        ("slice / plain, CPU per cell (paired)",
         f"{med((a.cpu / cells) / (b.cpu / plain_cells) for a, b in zip(slices, plains)):.2f} x", "", None),
        ("slice, harness overhead", f"{slice_overhead:.2f}", f"<= {GOAL_OVERHEAD:g}", slice_overhead <= GOAL_OVERHEAD),
        ("plain harness, its own overhead (1 core)", f"{med(b.wall / b.plain['work_s'] for b in plains):.2f}", "",
         None),
        ("slice, wall / its floor", f"{slice_wall / slice_floor:.1f} x",
         f"(floor: {slice_floor:.2f} s of CPU per core)",
         None),
    ]
    if whole is not None:
        full_floor, full_overhead = floor_s(whole.results, floors) / n, overhead(whole)
        rows += [
            (f"full matrix ({len(whole.results.cells)} cells), wall", f"{whole.wall:.1f} s",
             f"<= {GOAL_FULL_WALL_S:g} s on 2 cores", whole.wall <= GOAL_FULL_WALL_S),
            ("full matrix, CPU", f"{whole.cpu:.1f} s", "", None),
            ("full matrix, harness overhead", f"{full_overhead:.2f}", f"<= {GOAL_OVERHEAD:g}",
             full_overhead <= GOAL_OVERHEAD),
            ("full matrix, wall / its floor", f"{whole.wall / full_floor:.1f} x",
             f"(floor: {full_floor:.2f} s of CPU per core)", None),
        ]
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="runs of the one cell, and slice/plain pairs (default 3)")
    full = parser.add_mutually_exclusive_group()
    full.add_argument("--skip-full", action="store_true", help="leave the full matrix out (it takes minutes)")
    full.add_argument("--full-results", metavar="FILE",
                      help="analyse this full run's results.json instead of running it")
    parser.add_argument("--keep", metavar="DIR", help="keep every run's output there (default: a temp dir)")
    args = parser.parse_args()
    if args.runs < 1:
        parser.error(f"--runs must be at least 1, got {args.runs}")
    n = cores()
    orphans.adopt()
    # the matrix as installed: pip compiles a package's modules when it installs it (as tox does); a
    # checkout's editable install under PYTHONDONTWRITEBYTECODE would compile them again in every run
    for package in mtls_matrix.__path__:  # a namespace package: no __file__
        compileall.compile_dir(package, quiet=1)
    # a shared machine: the load says how far the wall times are inflated; CPU times hold better
    print(f"{dt.date.today()}: {n} cores, python {sys.version.split()[0]}, load average "
          f"{', '.join(f'{x:.2f}' for x in os.getloadavg())} at start", flush=True)
    with tempfile.TemporaryDirectory(prefix="mtls-matrix-speed-") as tmp:
        scratch = Path(args.keep or tmp)
        scratch.mkdir(parents=True, exist_ok=True)
        floors = floor.measure()
        ones = one_cell(args.runs, scratch)
        pairs = slice_vs_plain(args.runs, scratch)
        whole = None if args.skip_full else full_matrix(scratch, args.full_results)
        if whole is not None:
            where_time_goes(whole.results, whole.wall)
    print(f"\nload average {', '.join(f'{x:.2f}' for x in os.getloadavg())} at the end")

    slices, plains = [a for a, _ in pairs], [b for _, b in pairs]
    print(f"\nfigures (medians of {args.runs}; {n} cores):")
    for figure, measured, goal, met in figures(ones, slices, plains, whole, floors):
        mark = "" if met is None else "met" if met else "NOT met"
        print(f"  {figure:44} {measured:>10}   {goal:<34} {mark}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
