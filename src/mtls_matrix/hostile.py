"""Runs the hostile-server and hostile-client cells, side by side.

In these cells the harness plays one side (peers/hostile.py) and the other side is judged: does
it have a timeout of its own, how long is it, what does its user see, and does it close its
socket afterwards? The library gets no timeout from the harness (its defaults decide); the cell
deadline only ends the wait. Most of these cells wait out the whole deadline, so they run
concurrently (`Batch`): each cell has its own listener, and binds its client thread and its
listener's thread to its own recorder (observe.bind_thread), so attribution stays exact.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import threading
import time
from concurrent.futures import Future
from typing import Callable, Iterable

from mtls_matrix import leaks, observe
from mtls_matrix.cell import (
    CellSpec, ServerHost, _result, client_tls, drive_client, server_context, unsupported_reason,
)
from mtls_matrix.pki import PKI
from mtls_matrix.results import Cell, Hostile
from mtls_matrix.scenarios import HOSTILE_GROUPS
from mtls_matrix.verdict import Observation

RELEASE_S = 0.5  # after the connection ended: how long the peer under test gets to close its socket
CLOSE_GRACE_S = 0.1  # closing the batch: its threads end an instant after the last cell was taken
_tokens = itertools.count()


def is_hostile(spec: CellSpec) -> bool:
    return spec.scenario.group in HOSTILE_GROUPS


def batch_of(spec: CellSpec) -> str:
    """The batch a hostile cell runs in: the foreign peers' cells apart from the Python peers', so
    each batch stays as large as one worker carries on 2 cores (one batch of all of them pushed the
    Python clients' fault cells past the deadline) and pytest-xdist may give them different workers."""
    return "mtls-hostile-foreign" if spec.server.foreign or spec.client.peer.foreign else "mtls-hostile"


def run_hostile_cell(spec: CellSpec, pki: PKI, deadline: float, versions: dict[str, str]) -> Cell:
    scenario = spec.scenario
    recorder = observe.begin(f"{os.getpid()}-hostile-{next(_tokens)}", current=False)
    skipped = spec.server.missing() or spec.client.peer.missing_for(spec.client.variant)
    obs = Observation(events=recorder.events, skipped=skipped, unsupported=unsupported_reason(spec))
    host = client = None
    try:
        if obs.skipped or obs.unsupported:
            return _result(spec, obs, deadline, client, versions)
        host = ServerHost(spec.server, server_context(pki, scenario), spec.profile, scenario.hostile)
        asyncio.run_coroutine_threadsafe(_bind(recorder), host.loop).result(5)
        if HOSTILE_GROUPS[scenario.group] == "client":
            obs.hostile = _against_hostile_client(spec, host.port, deadline, recorder)
        else:
            tls = client_tls(pki, scenario, spec.client)
            client = drive_client(spec, host.port, recorder.token, tls, deadline, None,
                                  recorder, obs)
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
    return _result(spec, obs, deadline, client, versions)


async def _bind(recorder: observe.CellRecorder) -> None:
    observe.bind_thread(recorder)


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
    """The hostile cells of a session, in the background: started early (`start`, on the worker
    the scheduler gives them to, plugin.py) so their waits overlap the other cells, or on first
    demand; a cell asked for again (--repeat, --confirm) runs alone. Each batch (batch_of) runs
    all at once, one batch after the other. They cannot disturb the cells running meanwhile: each
    binds its threads to its own recorder and has its own listener, and the checks of other cells
    look at their own listener's port only."""

    def __init__(self, specs: Iterable[CellSpec], run: Callable[[CellSpec], Cell]):
        # a client that cannot take many cells at once (a browser) runs its hostile cells alone, in turn
        self.specs = [s for s in specs if is_hostile(s) and s.client.peer.side_by_side]
        self.run = run
        self.pending: dict[str, Future] | None = None
        self.thread: threading.Thread | None = None

    def start(self) -> None:
        if self.pending is None:
            self.pending = {s.id: Future() for s in self.specs}
            self.thread = threading.Thread(target=self._batches, args=(dict(self.pending),), name="hostile", daemon=True)
            self.thread.start()

    def _batches(self, futures: dict[str, Future]) -> None:
        """One batch after the other, each cell of a batch on its own daemon thread: a run that stops
        early (a signal, -x) leaves the waiting ones behind instead of sitting out their deadlines."""
        for batch in dict.fromkeys(batch_of(s) for s in self.specs):
            threads = [threading.Thread(target=self._one, args=(spec, futures[spec.id]), name=f"hostile:{spec.id}",
                                        daemon=True) for spec in self.specs if batch_of(spec) == batch]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()

    def _one(self, spec: CellSpec, future: Future) -> None:
        try:
            future.set_result(self.run(spec))
        except BaseException as exc:  # the cell's item reports it
            future.set_exception(exc)

    def take(self, spec: CellSpec) -> Cell:
        self.start()
        future = self.pending.pop(spec.id, None)
        return future.result() if future is not None else self.run(spec)

    def close(self) -> None:
        """Every cell was taken, so the batch is over, unless the run stopped early: then its
        waiting cells are not waited for (their threads are daemons)."""
        if self.thread is not None:
            self.thread.join(CLOSE_GRACE_S)
