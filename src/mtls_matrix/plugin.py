"""The pytest plugin: options, the cell catalogue as parametrisation, session fixtures, results.

Loaded through the `pytest11` entry point, so it must cost nothing to a pytest run that asks
for no cell: the PKI, the servers and the environment scrub only happen in the session fixture
the matrix test requests.
"""

from __future__ import annotations

import datetime as dt
import gc
import os
import platform
import random
import re
import shlex
import signal
import ssl
import sys
import threading
import time
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest

from mtls_matrix import baseline as baseline_mod
from mtls_matrix import forkserver
from mtls_matrix import floor as floor_mod
from mtls_matrix import isolate, leaks, observe, options, scenarios
from mtls_matrix import pki as pki_mod
from mtls_matrix import repeat as repeat_mod
from mtls_matrix import repro
from mtls_matrix import severity as severity_mod
from mtls_matrix.cell import ServerPool, harness_failure, run_cell, shared_listener
from mtls_matrix.hostile import Batch, batch_of, in_batch, run_batched_cell
from mtls_matrix.options import names
from mtls_matrix.peers.foreign import NOT_RUN
from mtls_matrix.pki import PKI
from mtls_matrix.results import (
    NOT_OBSERVED, SEVERITY, Cell, Floor, NotRun, PeerInfo, Results, Run, ScenarioInfo, Verdict, check_output, rate_text,
)
from mtls_matrix.selection import SCRUBBED, CellSpec, Selection, build_selection, scrub_environment, scrubbed
from mtls_matrix.timing import FORKED_EXIT_S, KILLED_WAIT_S

FAILING = {Verdict.FAIL, Verdict.INSECURE, Verdict.HANG, Verdict.ERROR}


def pytest_addoption(parser: pytest.Parser) -> None:
    options.add_pytest_options(parser.getgroup("mtls-matrix", "mtls-matrix cell selection and output"))


def _matrix_run(config: pytest.Config) -> bool:
    """Whether this pytest run is a matrix run (mtls-matrix run, or pytest with matrix options):
    the plugin must not change unrelated pytest runs."""
    o = config.option
    return bool(any([o.servers, o.clients, o.scenarios, o.peer_plugin, o.mtls_out])
                or o.profile != options.DEFAULT_PROFILES)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "mtls_cell: one matrix cell (server, client, scenario, profile)")
    o = config.option
    if _matrix_run(config):
        _selection(config)  # bad input: a usage error now, before anything runs
        if o.mtls_out:
            try:
                check_output(Path(o.mtls_out) / "results.json")
            except ValueError as exc:
                pytest.exit(f"mtls-matrix: error: --mtls-out {exc}", returncode=2)
        _stop_cleanly_on_signals()
        _fork_workers(config)
    if o.baseline:
        _baseline(config)  # a malformed baseline is a usage error too
    try:
        repeat_mod.check(o.repeat, o.confirm)
        cell_order(o.mtls_order)
    except ValueError as exc:
        pytest.exit(f"mtls-matrix: error: {exc}", returncode=2)
    if not hasattr(config, "workerinput"):
        config.pluginmanager.register(Collector(config), "mtls-matrix-collector")


def fork_server() -> forkserver.Server:
    """A fork server (forkserver.py) with what this process has imported so far (a fork of it, or
    a new interpreter that imports the same), and the run's scrubbed environment. `mtls-matrix run`
    starts it as soon as it knows the run has workers, before pytest starts a thread."""
    return forkserver.Server(str(pki_mod.private_dir("forkserver")), _imported(),
                             {k: v for k, v in os.environ.items() if k not in SCRUBBED})


def _imported() -> list[str]:
    """This process's imports, in their order: `_asyncio` before `asyncio` leaves asyncio half in Python."""
    return [name for name in sys.modules if not name.startswith("__")]


def _fork_workers(config: pytest.Config) -> None:
    """The controller of a run on pytest-xdist workers starts them from a fork server that has done
    its imports (forkserver.py): each worker then starts in milliseconds, not a second. The
    server `mtls-matrix run` passed as a plugin if any, else a new one."""
    o = config.option
    if hasattr(config, "workerinput") or o.dist == "no" or not o.tx or set(o.tx) != {"popen"}:
        return
    server = next((p for p in config.pluginmanager.get_plugins() if isinstance(p, forkserver.Server)), None)
    if server is None:
        server = fork_server()
    else:
        server.preload(_imported())  # pytest's and its plugins' since
    config.stash[_forkserver] = server
    os.environ[forkserver.ENV] = server.path
    o.tx = [f"popen//python={forkserver.launcher_command()}"] * len(o.tx)


_forkserver = pytest.StashKey[forkserver.Server]()
_selection_key = pytest.StashKey[Selection]()
_baseline_key = pytest.StashKey[baseline_mod.Baseline]()
_pki = pytest.StashKey[PKI]()
_results_key = pytest.StashKey[Results]()


def _selection(config: pytest.Config) -> Selection:
    if _selection_key not in config.stash:
        o = config.option
        try:
            config.stash[_selection_key] = build_selection(
                names(o.servers), names(o.clients), names(o.scenarios), o.profile, o.deadline, o.peer_plugin,
                o.all_pairs)
        except ValueError as exc:
            pytest.exit(f"mtls-matrix: error: {exc}", returncode=2)
    return config.stash[_selection_key]


def _baseline(config: pytest.Config) -> baseline_mod.Baseline | None:
    if config.option.baseline and _baseline_key not in config.stash:
        try:
            config.stash[_baseline_key] = baseline_mod.load(config.option.baseline)
        except ValueError as exc:
            pytest.exit(f"mtls-matrix: error: {exc}", returncode=2)
    return config.stash.get(_baseline_key, None)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "mtls_cell" in metafunc.fixturenames:
        cells = _selection(metafunc.config).cells
        metafunc.parametrize("mtls_cell", cells, ids=[c.id for c in cells])
        _stop_cleanly_on_signals()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Hostile cells run all at once in one process (hostile.Batch), in the background from the
    session's start, so they come last: by then their results are there. Under pytest-xdist,
    `--dist load` (as `mtls-matrix run` sets) gives them all to the first worker, last
    (MatrixScheduling); with `--dist loadgroup` they share one group. --mtls-order reverse or
    random:SEED: the cells in the opposite or a shuffled order (other items keep their places), so
    a test can show that no verdict depends on which cell ran before it."""
    hostile = []
    for item in items:
        spec = getattr(item, "callspec", None) and item.callspec.params.get("mtls_cell")
        if spec is not None and in_batch(spec):
            item.add_marker(pytest.mark.xdist_group(batch_of(spec)))
            hostile.append(item)
    if hostile:
        items[:] = [item for item in items if item not in set(hostile)] + hostile
    slots = [i for i, item in enumerate(items) if "mtls_cell" in getattr(item, "fixturenames", ())]
    for slot, item in zip(slots, cell_order(config.option.mtls_order)([items[i] for i in slots])):
        items[slot] = item
    if slots:
        # what is loaded by now (libraries, catalogue, items) lives as long as the process: the
        # collector stops walking it, which each cell's garbage would otherwise make it do again and again
        gc.freeze()


def cell_order(order: str):
    """--mtls-order: the function that puts the cell items in that order. Raises ValueError naming
    the valid orders. The shuffle is seeded, so every pytest-xdist worker collects the same order."""
    if order == "forward":
        return list
    if order == "reverse":
        return lambda cells: cells[::-1]
    kind, _, seed = order.partition(":")
    if kind == "random" and re.fullmatch(r"-?[0-9]+", seed):
        return lambda cells: random.Random(int(seed)).sample(cells, len(cells))
    raise ValueError(f"unknown --mtls-order {order!r}; valid: forward, reverse, random:SEED (SEED a whole number, "
                     "e.g. random:1)")


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
_stopped_by_signal = False


def _stop_cleanly_on_signals() -> None:
    """Ctrl-C, a terminated run (CI cancel, `kill`) and a closed terminal (SIGHUP) all stop a run
    the same way, within a second or two: every process of the run under this one is killed (no
    cell sits out its deadline), the keys are removed, pytest unwinds and the finished cells are
    written, marked incomplete. In every process of a run that holds matrix cells, the pytest-xdist
    workers included (a closed terminal signals them too): the plugin must not change unrelated
    pytest runs."""
    if threading.current_thread() is threading.main_thread():
        for signum in STOP_SIGNALS:
            signal.signal(signum, _interrupt)


def _interrupt(signum, frame) -> None:
    global _stopped_by_signal
    for stop in STOP_SIGNALS:  # once: a second signal must not break the unwinding
        signal.signal(stop, signal.SIG_IGN)
    _kill_descendants()
    pki_mod.remove_owned()  # this process's keys
    pki_mod.sweep()  # and those of the workers just killed
    _stopped_by_signal = True
    raise KeyboardInterrupt(f"stopped by signal {signal.Signals(signum).name}")


@pytest.hookimpl(tryfirst=True)
def pytest_keyboard_interrupt(excinfo: pytest.ExceptionInfo) -> None:
    """A stop is no crash: its traceback is the handler's frame alone, not the stack of the cell it
    stopped, whose every source file pytest would parse to show it."""
    if _stopped_by_signal:
        excinfo.traceback = excinfo.traceback[-1:]


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    """A run a signal stopped ends here, its results and reports written and its processes and
    keys gone: the interpreter's own teardown of a whole run's objects would cost another second."""
    if _stopped_by_signal:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(pytest.ExitCode.INTERRUPTED)
    if _forkserver in config.stash:
        os.environ.pop(forkserver.ENV, None)
        config.stash[_forkserver].close(FORKED_EXIT_S)


def _kill_descendants() -> None:
    """The pytest-xdist workers, foreign peers, browsers and client processes under this process,
    each in its own process group or not: all of them, at once, as they are now; then a moment
    for them to be gone, so the sweep that follows sees their private dirs as orphans."""
    killed = leaks.with_children((os.getpid(),))[1:]
    for pid in killed:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    end = time.monotonic() + KILLED_WAIT_S
    while not all(map(pki_mod.gone, killed)) and time.monotonic() < end:
        time.sleep(0.01)


def _controller_pki(config: pytest.Config) -> PKI:
    if _pki not in config.stash:
        config.stash[_pki] = PKI(leaves=_leaves(_selection(config).cells))
    return config.stash[_pki]


def _leaves(cells) -> tuple[str, ...]:
    """The certificates the selected cells use (an RSA key costs a tenth of a second: only where a
    scenario presents one), a reconnect's restart certificate among them; the good pair and the key a
    key-mismatch leaf borrows, always."""
    used = {"server", "client", pki_mod.MISMATCHED_KEY_OF}
    for scenario in {cell.scenario for cell in cells}:
        used |= {scenario.server_cert, scenario.client_cert, scenario.claim and scenario.claim.forwarded_cert}
        used |= {arg for step in scenario.io for arg in step if isinstance(arg, str) and arg in pki_mod.LEAVES}
    return tuple(sorted(name for name in used if name))


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node) -> None:
    """pytest-xdist: every worker uses the controller's CA, so a run has one CA."""
    node.workerinput["mtls_pki"] = str(_controller_pki(node.config).dir)
    if node.config.getoption("dist", None) == "load":
        node.workerinput["mtls_hostile_runner"] = HOSTILE_RUNNER


HOSTILE_RUNNER = "gw0"  # the worker MatrixScheduling gives every hostile cell to
WAITING_WORKERS = 2  # the workers -n auto adds for the cells that wait (ServerPeer.waits)
# -n auto runs a selection this small in the controller: a worker's start (its imports) costs a second,
# more than such a selection's cells take (a maintainer's one-cell loop, `versions`, `bisect`)
IN_PROCESS_CELLS = 12


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _waiting_ids(config: pytest.Config) -> set[str]:
    """The cells whose server mostly waits on library timers (ServerPeer.waits)."""
    return {spec.id for spec in _selection(config).cells if spec.server.waits}


@pytest.hookimpl(tryfirst=True, optionalhook=True)
def pytest_xdist_auto_num_workers(config: pytest.Config) -> int | None:
    """`-n auto` for a matrix run: one worker per core, plus WAITING_WORKERS for the cells that mostly
    wait (ServerPeer.waits: long-polls, refusals that sit out a library timer) when the run also has
    others: they spend much of their workers' time asleep, so the rest runs on the cores meanwhile.
    None at all for a selection of IN_PROCESS_CELLS or fewer that does not wait. Any other pytest
    run, or PYTEST_XDIST_AUTO_NUM_WORKERS set: pytest-xdist decides."""
    if not _matrix_run(config) or os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS"):
        return None
    return auto_workers(_selection(config))


def auto_workers(selection: Selection) -> int:
    """The workers `-n auto` gives this selection (pytest_xdist_auto_num_workers)."""
    waiting, cells = sum(spec.server.waits for spec in selection.cells), len(selection.cells)
    if cells <= IN_PROCESS_CELLS and not waiting:
        return 0
    return _cores() + (WAITING_WORKERS if 0 < waiting < cells else 0)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log):
    if config.getoption("dist", None) == "load":
        return _matrix_scheduling()(config, log)
    return None


def _matrix_scheduling():
    from xdist.scheduler import LoadScheduling  # only when pytest-xdist runs

    class MatrixScheduling(LoadScheduling):
        """`--dist load`, with three preferences. Every hostile cell goes to the HOSTILE_RUNNER
        worker, after all the other cells it gets: that worker starts their batch when the session
        starts, so they are done by then, and no other worker runs (a copy of) the batch. With more
        workers than cores (pytest_xdist_auto_num_workers), the workers beyond the cores (by id) take the
        waiting cells and the others the rest, as long as both kinds last; then each takes what is left.
        And a worker takes the cells of the processes it started before any other, then those of
        processes no worker has started, and only then another worker's: every worker would
        otherwise start most of them, a foreign server or a browser each time. A cell's process is
        its client's resident one (ClientPeer.resident: a browser), else its listener
        (cell.shared_listener)."""

        hostile: list[int] | None = None
        waiting: set[int] = frozenset()
        process: dict[int, tuple | None]  # each pending cell's shared process
        started: dict[tuple, object]  # the worker that started each process (its first cell's)

        def _send_tests(self, node, num: int) -> None:
            if self.hostile is None:
                batched = _batched_ids(self.config)
                self.hostile = [i for i in self.pending if self._cell(i) in batched]
                self.pending[:] = [i for i in self.pending if i not in set(self.hostile)]
                if len(self.nodes) > _cores():
                    ids = _waiting_ids(self.config)
                    self.waiting = {i for i in self.pending if self._cell(i) in ids}
                processes = _shared_processes(self.config)
                self.process = {i: processes.get(self._cell(i)) for i in self.pending}
                self.started = {}
            candidates = self.pending
            if self.waiting:
                waits = int(node.gateway.id[2:]) >= _cores()  # gwN: the workers beyond the cores
                candidates = [i for i in self.pending if (i in self.waiting) == waits] or self.pending
            chosen = self._near(node, candidates, num)
            for i in chosen:
                self.pending.remove(i)
            if chosen:
                self.node2pending[node].extend(chosen)
                node.send_runtest_some(chosen)
            if not self.pending and self.hostile:
                runner = next((n for n in self.nodes if n.gateway.id == HOSTILE_RUNNER), self.nodes[0])
                self.node2pending[runner].extend(self.hostile)
                runner.send_runtest_some(self.hostile)
                self.hostile = []

        def _cell(self, index: int) -> str:
            return self.collection[index].partition("[")[2][:-1]

        def _near(self, node, candidates: list[int], num: int) -> list[int]:
            """Up to `num` of the candidates, in their order: this node's processes' cells first, then
            those of processes not started yet (which become this node's), then any."""
            chosen: dict[int, None] = {}  # ordered, and a set
            for rank in ("mine", "new", "any"):
                for i in candidates:
                    if len(chosen) == num:
                        return list(chosen)
                    key = self.process[i]
                    owner = self.started.get(key) if key is not None else node
                    if i not in chosen and (rank == "any" or owner is node or (rank == "new" and owner is None)):
                        chosen[i] = None
                        if key is not None:
                            self.started.setdefault(key, node)
            return list(chosen)

    return MatrixScheduling


def shared_process(spec: CellSpec) -> tuple | None:
    """The process a worker starts for this cell and keeps for others (MatrixScheduling): its client's
    resident one (a browser), else its listener; None when it shares neither."""
    return spec.client.peer.resident(spec.client.variant, spec.served) or shared_listener(spec)


def _shared_processes(config: pytest.Config) -> dict[str, tuple | None]:
    """Each cell's shared process, by cell id."""
    return {spec.id: shared_process(spec) for spec in _selection(config).cells}


def _batched_ids(config: pytest.Config) -> set[str]:
    """The cells that run in the batches (hostile.in_batch): hostile ones, and those waiting on a library timer."""
    return {spec.id for spec in _selection(config).cells if in_batch(spec)}


@dataclass
class MatrixEnv:
    pki: PKI
    servers: ServerPool
    versions: dict[str, str]
    hostile: Batch


@pytest.fixture(scope="session")
def mtls_matrix_env(request: pytest.FixtureRequest):
    config = request.config
    scrub_environment()
    observe.install()
    shared = getattr(config, "workerinput", {}).get("mtls_pki")
    pki = PKI.open(shared) if shared else _controller_pki(config)
    servers = ServerPool(pki)
    versions, deadline = _versions(_selection(config)), _selection(config).deadline
    specs = [item.callspec.params["mtls_cell"] for item in request.session.items
             if "mtls_cell" in getattr(getattr(item, "callspec", None), "params", {})]
    batch = Batch(specs, lambda spec: run_batched_cell(spec, pki, deadline, versions))
    worker = getattr(config, "workerinput", None)
    if worker is None or worker.get("mtls_hostile_runner") == worker["workerid"]:
        batch.start()
    yield MatrixEnv(pki, servers, versions, batch)
    batch.close()
    servers.close()
    isolate.POOL.close()
    pki.close()


def _program(argv0: str) -> str:
    name = Path(argv0).name
    return "mtls-matrix" if name in ("cli.py", "mtls-matrix") else "pytest" if "pytest" in argv0 else name


def _versions(selection: Selection) -> dict[str, str]:
    peers = {c.server for c in selection.cells} | {c.client.peer for c in selection.cells}
    return {p.library: p.version for p in sorted(peers, key=lambda p: p.library)}


def scenario_infos(selection: Selection) -> list[ScenarioInfo]:
    """The catalogue entries the selection's cells play, in catalogue order, as the run knew them."""
    played = {spec.scenario.name for spec in selection.cells}
    return [ScenarioInfo(name=s.name, group=s.group, description=s.description, expectation=s.expect.describe(),
                         tags=sorted(s.tags | {s.tls_tag}), severity=severity_mod.table(s),
                         reproducible=repro.scenario_refusal(s) is None)
            for s in scenarios.CATALOGUE if s.name in played]


def peer_infos(selection: Selection) -> list[PeerInfo]:
    """Every peer the selection's cells name, with what findings need to blame a layer."""
    found: dict[str, PeerInfo] = {}
    for spec in selection.cells:
        server, client = spec.server, spec.client
        if f"server:{server.name}" not in found:
            reproducible, lines = repro.configures(server, "server")
            found[f"server:{server.name}"] = PeerInfo(
                name=f"server:{server.name}", role="server", family=server.family, library=server.library,
                version=server.version, stack=server.stack, framework=server.framework, proxy=server.proxy,
                foreign=server.foreign, harness=server.harness, reproducible=reproducible, configures=lines)
        if f"client:{client.name}" not in found:
            reproducible, lines = repro.configures(client.peer, "client", client.variant)
            found[f"client:{client.name}"] = PeerInfo(
                name=f"client:{client.name}", role="client", family=client.peer.family, library=client.peer.library,
                version=client.peer.version, stack=client.peer.stack, foreign=client.peer.foreign,
                harness=client.peer.harness, control=client.peer.controls.get(client.variant),
                reproducible=reproducible, configures=lines)
    return sorted(found.values(), key=lambda p: p.name)


def record(request: pytest.FixtureRequest, cell: Cell) -> None:
    """Hand the result to the controller (through pytest-xdist when it runs) and judge the item."""
    base = _baseline(request.config)
    known = baseline_mod.mark(base, cell) if base else None
    request.node.user_properties.append(("mtls_cell", cell.model_dump_json()))
    if cell.verdict in NOT_OBSERVED:
        pytest.skip(f"{cell.verdict.value}: {cell.reason}")
    if known:  # strict: an entry whose cells pass again fails the run at the end (Collector)
        # pytrace=False, as for pytest.fail below: the report is the message, no source is parsed.
        # pytest.xfail() formats a full traceback, and CPython 3.11's ast.parse (used for that, and
        # for the carets of every traceback printed) keeps its recursion depth in state shared by
        # threads: a library thread printing a traceback at that moment (engine.io logs its request
        # errors) breaks it, and every later parse in the worker raises SystemError
        # ("AST constructor recursion depth mismatch"), which crashed whole runs
        raise pytest.xfail.Exception(f"KNOWN {cell.verdict.value} (baseline {known.label}): {known.reason}",
                                     pytrace=False)
    if severity_mod.is_control(cell):
        return  # verification off on purpose: its INSECURE is the expected outcome, never a finding
    if cell.flaky:  # even when the first run passed: a verdict that varies is a finding
        flaky = (f"FLAKY ({rate_text(cell)}): first run {cell.verdict.value} at {cell.phase}: "
                 f"{cell.reason}")
        if base and cell.baseline is None:  # gated: not reproduced, no NEW finding (--strict still fails the run)
            raise pytest.xfail.Exception(f"{flaky}; not reproduced, not NEW", pytrace=False)
        pytest.fail(flaky, pytrace=False)
    if cell.verdict in FAILING:
        detail = f" [{cell.error.type}: {cell.error.message}]" if cell.error.message else ""
        weight = f"{cell.severity.value} " if cell.severity else ""
        pytest.fail(f"{weight}{cell.verdict.value} at {cell.phase}: {cell.reason}{detail}", pytrace=False)


def run(request: pytest.FixtureRequest, spec: CellSpec, env: MatrixEnv) -> Cell:
    """One cell, run --repeat times (plus --confirm reruns) back to back: still one item. With a
    baseline, a first run that would be a NEW finding is confirmed (repeat.CONFIRM_NEW)."""
    deadline, option, base = _selection(request.config).deadline, request.config.option, _baseline(request.config)
    would_be_new = (lambda cell: baseline_mod.classify_cell(base, cell)[0] == "NEW") if base else None

    def guarded(run: Callable[[], Cell]) -> Cell:
        try:
            return run()
        except Exception as exc:  # a harness bug costs this cell (ERROR), never the run
            return harness_failure(spec, exc, deadline, env.versions)

    if in_batch(spec):
        return repeat_mod.run_repeated(
            lambda: guarded(lambda: env.hostile.take(spec)), option.repeat, option.confirm, would_be_new,
            run_more=lambda first, n: [guarded(future.result) for future in env.hostile.again(spec, n)])

    def once(cell_deadline: float) -> Cell:
        return guarded(lambda: run_cell(spec, env.servers, env.pki, cell_deadline, env.versions))

    return repeat_mod.run_repeated(
        lambda: once(deadline), option.repeat, option.confirm, would_be_new,
        run_more=lambda first, n: [once(repeat_mod.rerun_deadline(first, deadline)) for _ in range(n)])


class Outcome:
    """What `mtls-matrix run` hands pytest.main to keep the results the Collector wrote to results.json,
    in memory: reading the file back costs a second of CPU on the full matrix."""

    results: Results | None = None

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        self.results = config.stash.get(_results_key, None)


class Collector:
    """Controller side of a run: gathers the cells (from pytest-xdist workers too) and writes
    results.json at the end."""

    def __init__(self, config: pytest.Config):
        self.config = config
        self.cells: list[Cell] = []
        self.started = dt.datetime.now(dt.timezone.utc)
        self.t0 = time.perf_counter()
        self.results_path: Path | None = None
        self.baseline: baseline_mod.Classification | None = None
        self.floor: Floor | None = None
        self.peers: list[PeerInfo] | None = None
        self.junit: dict[str, list[tuple[str, str]]] = {}  # JUnit properties, from a cell's call to its teardown

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionstart(self, session: pytest.Session) -> None:
        """The peers as the report needs them, before any cell runs: reading their library code parses it
        (repro.configures), and CPython 3.11's parser breaks in a process where a library thread printed a
        traceback meanwhile (see record()). Then the bare-ssl floor the report compares pairs with, once per
        run: before pytest-xdist starts its workers, so it runs on a quiet machine (a fraction of a second).
        Not for a selection small enough to run in the controller: it would cost more than its cells."""
        if _selection_key in self.config.stash:
            self.peers = peer_infos(self.config.stash[_selection_key])
        if _selection_key in self.config.stash and len(self.config.stash[_selection_key].cells) > IN_PROCESS_CELLS:
            try:
                self.floor = floor_mod.measure()
            except Exception as exc:  # costs the report its floor column, never the run
                warnings.warn(pytest.PytestWarning(f"mtls-matrix: the bare-ssl floor was not measured: {exc!r}"))

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """Take the cell out of the reports (it would bloat JUnit XML), reading it once, from the call's;
        leave the verdict, phase and canonical error as JUnit properties, and the pytest-xdist worker that
        ran it, on the teardown's report, where JUnit XML takes a test's properties from."""
        props = dict(report.user_properties)
        if "mtls_cell" not in props:
            return
        report.user_properties = [p for p in report.user_properties if p[0] != "mtls_cell"]
        if report.when == "call":
            cell = Cell.model_validate_json(props["mtls_cell"])
            self.cells.append(cell)
            worker = getattr(getattr(report, "node", None), "gateway", None)
            self.junit[report.nodeid] = [("verdict", cell.verdict.value), ("phase", cell.phase),
                                         ("canonical", cell.error.canonical or ""),
                                         ("worker", worker.id if worker else "main")]
        elif report.when == "teardown":
            report.user_properties += self.junit.pop(report.nodeid, [])

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        results = self.results(exitstatus) if self.cells else None
        base = _baseline(self.config)
        if results and base:
            self.baseline = baseline_mod.classify(results, base)
            if self.baseline.stale and session.exitstatus == 0:
                session.exitstatus = 1  # XPASS: a known issue no longer shows; the baseline must change
        if results and self.config.option.mtls_out:
            self.results_path = Path(self.config.option.mtls_out) / "results.json"
            results.save(self.results_path)
            self.config.stash[_results_key] = results
        if _pki in self.config.stash:
            self.config.stash[_pki].close()

    def results(self, exitstatus: int) -> Results:
        selection = _selection(self.config)
        order = {spec.id: i for i, spec in enumerate(selection.cells)}
        cells = sorted(self.cells, key=lambda c: order.get(c.id, len(order)))
        option = self.config.option
        return Results(
            run=Run(
                started=self.started.isoformat(timespec="seconds"),
                finished=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                duration_s=round(time.perf_counter() - self.t0, 2),
                complete=exitstatus in (0, 1) and len(cells) == len(selection.cells),
                command=shlex.join([_program(sys.argv[0]), *sys.argv[1:]]),
                python=platform.python_version(),
                openssl=ssl.OPENSSL_VERSION,
                platform=platform.platform(),
                versions=_versions(selection),
                ca_fingerprint=self.config.stash[_pki].fingerprint if _pki in self.config.stash else "",
                scrubbed_env=sorted(scrubbed),
                deadline_s=selection.deadline,
                profiles=selection.profiles,
                workers=int(getattr(option, "numprocesses", None) or 1) if getattr(option, "dist", "no") != "no" else 1,
                floor=self.floor,
                scenarios=scenario_infos(selection),
                peers=self.peers if self.peers is not None else peer_infos(selection),
                not_run=[NotRun(name=name, why=why) for name, why in NOT_RUN],
            ),
            cells=cells,
        )

    def pytest_terminal_summary(self, terminalreporter) -> None:
        if not self.cells:
            return
        # a control's INSECURE is its expected outcome: counted apart, never with the findings
        judged = [c for c in self.cells if not severity_mod.is_control(c)]
        controls = len(self.cells) - len(judged)
        counts = Counter(c.verdict for c in judged)
        line = ", ".join(f"{counts[v]} {v.value}" for v in sorted(counts, key=SEVERITY.get))
        terminalreporter.write_sep("=", "mtls-matrix")
        flaky = [c for c in judged if c.flaky]
        terminalreporter.write_line(
            f"{len(self.cells)} cells: {line}" + (f"; {len(flaky)} FLAKY" if flaky else "")
            + (f"; {controls} controls (verification off on purpose, as expected: not findings)" if controls else ""))
        weights = Counter(c.severity for c in judged if severity_mod.is_finding(c) and not c.flaky)
        advised = sum(c.verdict == Verdict.PASS and bool(c.advisories) for c in judged)
        terminalreporter.write_line(
            "findings by severity: " + ", ".join(f"{weights[s]} {s.value}" for s in severity_mod.FINDINGS)
            + (f"; {advised} PASS with advisories" if advised else ""))
        hangs = [c for c in self.cells if c.verdict == Verdict.HANG]
        if hangs:  # whose clock decided them: the library's own timeout they outlived, or the harness's deadline
            harness = sum(c.deadline is not None and c.deadline.source == "harness" for c in hangs)
            terminalreporter.write_line(f"{harness} of {len(hangs)} HANG decided by a deadline the harness chose (the "
                                        "library has no timeout of its own for that wait, or one longer than the "
                                        "matrix waits); the others outlived the library's own")
        if self.baseline:
            terminalreporter.write(baseline_mod.render_check(self.baseline, "this run"))
            for cell in flaky:
                if cell.baseline is None:
                    terminalreporter.write_line(f"FLAKY  {cell.id}: {rate_text(cell)}: its runs "
                                                "disagree, so it is no NEW finding (--strict fails on it)")
        if self.results_path:
            terminalreporter.write_line(f"results: {self.results_path}")
