"""Runs the cells that wait on a clock, side by side: the hostile groups, and the cells whose
client waits on a timer of its library's own (ClientPeer.waits: a long-poll a refused Socket.IO
connect sits out, an acknowledgement's timeout).

In the hostile cells the harness plays one side (peers/hostile.py) and the other side is judged:
does it have a timeout of its own, how long is it, what does its user see, and does it close its
socket afterwards? The library gets no timeout from the harness (its defaults decide). Every such
cell's deadline is the library's own timeout for that wait plus a margin (cell.cell_deadline), or
the harness's when it has none. Most of these cells wait, so they run concurrently (`Batch`):
each cell has its own listener, and binds its client thread and its listener's thread (and the
threads those start) to its own recorder (observe.bind_thread), so attribution stays exact.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from concurrent.futures import Future, wait
from typing import Callable, Iterable

from mtls_matrix import leaks, observe
from mtls_matrix.cell import (
    ServerHost, _result, cell_deadline, client_tls, drive_client, library_clock, run_cell, server_context,
    unsupported_reason,
)
from mtls_matrix.pki import PKI
from mtls_matrix.results import Cell, Hostile
from mtls_matrix.scenarios import HOSTILE_GROUPS
from mtls_matrix.selection import CellSpec
from mtls_matrix.timing import BATCH_CLOSE_GRACE_S, BATCH_STAGGER_S, RELEASE_S, WAITS_PACE_S
from mtls_matrix.verdict import Observation

BATCHES = ("mtls-hostile", "mtls-hostile-foreign", "mtls-waits")  # in the order they start
_tokens = itertools.count()


def in_batch(spec: CellSpec) -> bool:
    """Does the cell run in a Batch: a hostile cell, or one whose client waits on its library's own timer?"""
    return spec.scenario.group in HOSTILE_GROUPS or library_clock(spec) is not None


def batch_of(spec: CellSpec) -> str:
    """The batch a cell runs in: the foreign peers' hostile cells apart from the Python peers', so
    each batch stays as large as one worker carries on 2 cores (one batch of all of them pushed the
    Python clients' fault cells past the deadline), and the cells waiting on a library timer in a
    third; pytest-xdist may give them different workers."""
    if spec.scenario.group not in HOSTILE_GROUPS:
        return BATCHES[2]
    return BATCHES[1] if spec.server.foreign or spec.client.peer.foreign else BATCHES[0]


def run_batched_cell(spec: CellSpec, pki: PKI, deadline: float, versions: dict[str, str]) -> Cell:
    if spec.scenario.group in HOSTILE_GROUPS:
        return run_hostile_cell(spec, pki, deadline, versions)
    return run_cell(spec, None, pki, deadline, versions, side_by_side=True)


def run_hostile_cell(spec: CellSpec, pki: PKI, deadline: float, versions: dict[str, str]) -> Cell:
    scenario = spec.scenario
    clock = cell_deadline(spec, deadline)
    recorder = observe.begin(f"{os.getpid()}-hostile-{next(_tokens)}", current=False)
    skipped = spec.server.missing() or spec.client.peer.missing_for(spec.client.variant)
    obs = Observation(events=recorder.events, skipped=skipped, unsupported=unsupported_reason(spec))
    host = client = None
    try:
        if obs.skipped or obs.unsupported:
            return _result(spec, obs, clock, client, versions)
        host = ServerHost(spec.server, server_context(pki, scenario), spec.profile, scenario.hostile, cell=recorder)
        if HOSTILE_GROUPS[scenario.group] == "client":
            obs.hostile = _against_hostile_client(spec, host.port, clock.seconds, recorder)
            obs.server_crash = host.crash
        else:
            client = drive_client(spec, host.port, recorder.token, client_tls(pki, scenario, spec.client),
                                  clock.seconds, None, recorder, obs, side_by_side=True)
            fault = obs.event("server", "fault")
            obs.hostile = Hostile(
                behaviour=scenario.hostile, under_test="client", ended=not obs.timed_out,
                after_s=None if obs.timed_out else round(client.total_s, 3),
                after_fault_s=None if obs.timed_out or not fault else round(max(0.0, client.total_s - fault.t), 3),
                how=None if obs.timed_out else obs.error.canonical if obs.error else "CLOSED",
                left_open=None if obs.timed_out else _held(host.port, "client"),
                own_timeouts=spec.client.peer.own_timeouts(spec.client.variant))
            client.exc = None  # the harness lets go of the error: what stays open, the library holds
    except Exception as exc:
        obs.harness_error = f"{type(exc).__name__}: {exc}"
    finally:
        if host is not None:
            host.close()
        observe.end(recorder)
    return _result(spec, obs, clock, client, versions)


def _against_hostile_client(spec: CellSpec, port: int, deadline: float, recorder: observe.CellRecorder) -> Hostile:
    recorder.t0 = time.perf_counter()
    sock, how, after = spec.client.peer.misbehave(spec.scenario.hostile, port, deadline)
    sock.close()  # the harness lets go: a server that waited must now notice and close its side
    held = None if spec.server.out_of_process else _held(port, "server")  # another process's sockets: not seen
    return Hostile(behaviour=spec.scenario.hostile, under_test="server", ended=how is not None,
                   after_s=round(after, 3) if how else None, how=how, left_open=held,
                   own_timeouts=spec.server.own_timeouts())


def _held(port: int, side: str) -> bool:
    """Does `side` still hold a socket of a connection to `port` RELEASE_S after it ended?"""
    end = time.perf_counter() + RELEASE_S
    while True:
        client, server = leaks.open_on(port)
        held = client if side == "client" else server
        if not held or time.perf_counter() >= end:
            return bool(held)
        time.sleep(0.01)


class Batch:
    """The batched cells of a session (in_batch), in the background: started early (`start`, on the
    worker the scheduler gives them to, plugin.py) so their waits overlap the other cells, or on first
    demand; a cell asked for again (--repeat, --confirm) runs alone. Each batch (batch_of) starts
    BATCH_STAGGER_S after the one before it, its cells all at once (the waiting ones WAITS_PACE_S
    apart), and they run side by side. They cannot disturb the cells running meanwhile:
    each binds its threads to its own recorder and has its own listener, and the checks of other
    cells look at their own listener's port only."""

    def __init__(self, specs: Iterable[CellSpec], run: Callable[[CellSpec], Cell]):
        # a client that cannot take many cells at once (a browser) runs its batched cells alone, in turn
        self.specs = [s for s in specs if in_batch(s) and s.client.peer.side_by_side]
        self.run = run
        self.pending: dict[str, Future] | None = None
        self.thread: threading.Thread | None = None

    def start(self) -> None:
        if self.pending is None:
            self.pending = {s.id: Future() for s in self.specs}
            self.thread = threading.Thread(target=self._batches, args=(dict(self.pending),), name="hostile", daemon=True)
            self.thread.start()

    def _batches(self, futures: dict[str, Future]) -> None:
        """The batches in turn, each cell on its own daemon thread: a run that stops early (a signal, -x)
        leaves the waiting ones behind instead of sitting out their deadlines."""
        previous: list[CellSpec] = []
        for batch in sorted({batch_of(s) for s in self.specs}, key=BATCHES.index):
            # the batch before has started: wait for it to end, or for its start-up to be over
            wait([futures[s.id] for s in previous], timeout=BATCH_STAGGER_S)
            previous = [s for s in self.specs if batch_of(s) == batch]
            for spec in previous:
                threading.Thread(target=self._one, args=(spec, futures[spec.id]), name=f"{batch}:{spec.id}",
                                 daemon=True).start()
                time.sleep(WAITS_PACE_S if batch == BATCHES[2] else 0)

    def _one(self, spec: CellSpec, future: Future) -> None:
        try:
            future.set_result(self.run(spec))
        except BaseException as exc:  # the cell's item reports it
            future.set_exception(exc)

    def again(self, spec: CellSpec, times: int) -> list[Future]:
        """More runs of a batched cell (--repeat, --confirm), side by side as its first run was: each has
        a listener of its own, and reruns of a cell that waits out a library timer cost that wait once."""
        futures = [Future() for _ in range(times)]
        for n, future in enumerate(futures):
            threading.Thread(target=self._one, args=(spec, future), name=f"again-{n}:{spec.id}", daemon=True).start()
        return futures

    def take(self, spec: CellSpec) -> Cell:
        self.start()
        future = self.pending.pop(spec.id, None)
        return future.result() if future is not None else self.run(spec)

    def close(self) -> None:
        """Every cell was taken, so the batch is over, unless the run stopped early: then its
        waiting cells are not waited for (their threads are daemons)."""
        if self.thread is not None:
            self.thread.join(BATCH_CLOSE_GRACE_S)
