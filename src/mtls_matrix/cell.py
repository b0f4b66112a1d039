"""Runs one cell under a deadline and turns what happened into a results.Cell.

A server peer runs once per (server, TLS settings, profile) on its own thread and event loop and
serves many cells; a client runs each cell on a fresh thread and event loop, so a client that
blocks (sync libraries) or never finishes costs its own cell only: the runner stops waiting at
the deadline, cancels what it can and moves on.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import copy
import functools
import itertools
import os
import re
import secrets
import socket
import ssl
import threading
import time
from dataclasses import replace
from urllib.parse import quote, urlencode

from mtls_matrix import evidence, isolate, leaks, observe, severity
from mtls_matrix.canonical import CLOSE_CODES, canonical_from_exception, canonical_from_tls
from mtls_matrix.peers import (
    CLOSE_COMMAND, FINAL_CLOSE, FORWARDED_CERT, HANDSHAKE_GROUPS, PROXY_PROOF, PROXY_SECRET, TOKEN, ClientTLS,
    ClientVariant, Clock, Closed, Connection, NoOutcome, ServerFiles, ServerPeer, TokenAuth, Unsupported,
)
from mtls_matrix.peers.hostile import STAGES
from mtls_matrix.pki import PKI
from mtls_matrix.results import Cell, Deadline, ErrorInfo, Leaks, ServerSaw, Step, TLSSide, Verdict
from mtls_matrix.scenarios import HOSTILE_GROUPS, Claim, Scenario, Token
from mtls_matrix.selection import CellSpec
from mtls_matrix.timing import (
    CLIENT_PROCESS_REPLY_GRACE_S, CLIENT_STOP_GRACE_S, CLOCK_MARGIN, CLOCK_MARGIN_S, FOREIGN_LEAK_SETTLE_S,
    LEAK_SETTLE_S, LONGEST_WAIT_S, RESTART_GAP_S, SETTLE_S,
)
from mtls_matrix.verdict import Observation, error_info, judge, signal_info
from mtls_matrix.verdict import own_check_failed as verdict_own_check_failed

LEAK_GROUPS = ("client-rejected", "server-rejected")
_tokens = itertools.count()
WRONG_TOKEN = secrets.token_urlsafe(24)  # well-formed, never issued (token-*-wrong)


def server_context(pki: PKI, scenario: Scenario) -> ssl.SSLContext:
    """What every server is configured with: its certificate, the run's CA, a required client
    certificate (none requested on a token-auth listener); plus what the scenario must set (a TLS
    version cap, a CRL)."""
    credential = pki[scenario.server_cert]
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(pki.root))
    ctx.verify_mode = ssl.CERT_NONE if scenario.token or not scenario.client_auth else ssl.CERT_REQUIRED
    ctx.load_cert_chain(str(credential.chain), str(credential.key))
    if scenario.server_tls == "tls12":
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    elif scenario.server_tls == "tls13":
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    if scenario.crl:
        ctx.load_verify_locations(str(pki.crl))
        ctx.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF
    # the same settings as files, for stacks configured by paths (peers/foreign.py, uvicorn)
    ctx.mtls_files = ServerFiles(credential.chain, credential.key, pki.root, pki.crl if scenario.crl else None,
                                 agent_cert=pki["client"].cert)
    return ctx


def client_tls(pki: PKI, scenario: Scenario, client: ClientVariant | None = None) -> ClientTLS:
    """What the client is given; with `client`, also the process environment its variant and the
    scenario ask for (ClientTLS.environment)."""
    credential = pki[scenario.client_cert] if scenario.client_cert else None
    claim = scenario.claim
    headers = claimed_headers(pki, claim) if claim else ()
    auth = (("agent", claim.agent),) if claim else ()
    carrier, value = presented_token(scenario.token)
    if carrier == "header":
        headers += (("Authorization", value),)
    elif carrier == "auth":
        auth += (("token", value),)
    return ClientTLS(
        ca=pki.root,
        cert=credential.chain if credential else None,
        key=credential.key if credential else None,
        server_hostname=scenario.host,
        headers=headers,
        auth=auth,
        environment=client_environment(pki, scenario, client) if client else (),
    )


def client_environment(pki: PKI, scenario: Scenario, client: ClientVariant) -> tuple[tuple[str, str], ...]:
    """The variant's trust-anchor variables set to the run's CA; an `environment` scenario's other CA."""
    found = {name: str(pki.root) for name in client.peer.environment.get(client.variant, ())}
    if scenario.environment == "other-ca":
        found.update(pki.other_ca_environment())
    return tuple(sorted(found.items()))


def presented_token(token: Token | None, valid: str = TOKEN, wrong: str = WRONG_TOKEN) -> tuple[str | None, str]:
    """(carrier, value as sent) for a token scenario; the value is what goes into the Authorization
    header, the `token` query parameter or the Socket.IO auth payload."""
    if token is None or token.carrier is None:
        return None, ""
    value = wrong if token.kind == "wrong" else valid
    if token.carrier == "header":  # malformed: the bare token, without the Bearer scheme
        return "header", value if token.kind == "malformed" else f"Bearer {value}"
    # malformed: a Bearer scheme where the bare token belongs
    return token.carrier, f"Bearer {value}" if token.kind == "malformed" else value


def cell_url(scenario: Scenario, port: int, cell: str) -> str:
    """The URL the client is given; its query carries a `token` (the token group's query carrier) and
    the Socket.IO namespace the family's clients connect to."""
    carrier, value = presented_token(scenario.token)
    query = {"token": value} if carrier == "query" else {}
    if scenario.namespace:
        query["namespace"] = scenario.namespace
    return f"wss://{scenario.host}:{port}/cell/{cell}" + (f"?{urlencode(query)}" if query else "")


def claimed_headers(pki: PKI, claim: Claim) -> tuple[tuple[str, str], ...]:
    """The proxy's headers as the client sends them itself: the certificate URL-escaped like nginx's
    $ssl_client_escaped_cert (only ever a public certificate, never a key)."""
    headers = []
    if claim.forwarded_cert:
        headers.append((FORWARDED_CERT, quote(pki[claim.forwarded_cert].cert.read_text(), safe="")))
    elif claim.forwarded_raw is not None:
        headers.append((FORWARDED_CERT, claim.forwarded_raw))
    if claim.proof:
        headers.append((PROXY_PROOF, PROXY_SECRET if claim.proof == "proxy" else "guessed-" + PROXY_SECRET[:8]))
    return tuple(headers)


class ServerHost:
    """One listener of one server peer, on its own thread and event loop. `cell`: the listener serves
    that one cell only, whose recorder its threads (and the threads they start) are bound to."""

    def __init__(self, peer: ServerPeer, context: ssl.SSLContext, profile: str, hostile: str | None = None,
                 token_auth: TokenAuth | None = None, cell: observe.CellRecorder | None = None):
        self.peer = copy.copy(peer)  # one instance per listener
        if peer.harness:
            self.peer.behaviour = hostile  # the harness's hostile server: what this listener does
        self.peer.token_auth = token_auth
        self.loop = asyncio.new_event_loop()
        self.died: str | None = None  # what ended the event loop, when it ended by itself
        self.stopping = False
        self.thread = threading.Thread(target=self._serve, args=(cell,), name=f"server:{peer.name}", daemon=True)
        self.thread.start()
        try:
            self.port = asyncio.run_coroutine_threadsafe(self.peer.start(context, profile), self.loop).result(10)
        except BaseException:
            self.close()  # its loop and thread go with the start that failed
            raise

    def _serve(self, cell: observe.CellRecorder | None) -> None:
        if cell is not None:
            observe.bind_thread(cell, inherit=True)
        try:
            self.loop.run_forever()
        except BaseException as exc:
            self.died = f"its event loop died: {type(exc).__name__}: {exc}"
            raise
        if not self.stopping:
            self.died = "its event loop stopped"

    @property
    def alive(self) -> bool:
        return self.thread.is_alive() and self.loop.is_running() and self.peer.alive

    @property
    def crash(self) -> str | None:
        """What ended this listener by itself, if it did: its event loop, or the peer's own listener."""
        if self.alive:
            return None
        return self.died or self.peer.crash() or f"the listener of {self.peer.name} is gone"

    def close(self) -> None:
        self.join(self.stop())

    def stop(self) -> concurrent.futures.Future | None:
        """Start the peer's stop on its loop; join() waits for it."""
        self.stopping = True
        if not (self.thread.is_alive() and self.loop.is_running()):
            return None  # crashed or exited: nothing left to stop
        return asyncio.run_coroutine_threadsafe(self.peer.stop(), self.loop)

    def join(self, stopping: concurrent.futures.Future | None) -> None:
        if stopping is None:
            return
        try:
            stopping.result(5)
        except Exception:
            pass  # a peer that cannot stop cleanly still loses its loop below
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(2)


class ServerControl:
    """The harness's hand on a cell's private server (Scenario.private_server), for the
    `reconnect` step: drop its connections, or restart it (with another certificate, if asked)."""

    def __init__(self, host: ServerHost, pki: PKI, scenario: Scenario, recorder: observe.CellRecorder):
        self.host, self.pki, self.scenario, self.recorder = host, pki, scenario, recorder

    def disrupt(self, how: str, server_cert: str | None = None) -> None:
        if how == "drop":
            action = self.host.peer.drop()
        elif how == "restart":
            comes_back = replace(self.scenario, server_cert=server_cert or self.scenario.server_cert)
            action = self.host.peer.restart(server_context(self.pki, comes_back), RESTART_GAP_S)
        else:
            raise ValueError(f"unknown reconnect step {how!r}; valid: drop, restart")
        asyncio.run_coroutine_threadsafe(action, self.host.loop).result(5)


def listener_key(server: ServerPeer, scenario: Scenario, profile: str) -> tuple:
    return server.name, scenario.server_key, profile


def shared_listener(spec: CellSpec) -> tuple | None:
    """The ServerPool listener a cell outside the batches uses (listener_key), or None when it starts one of its own."""
    if spec.scenario.private_server or spec.server.private_listener:
        return None
    return listener_key(spec.server, spec.scenario, spec.profile)


class ServerPool:
    """Listeners started on first use and reused by every cell with the same server settings."""

    def __init__(self, pki: PKI):
        self.pki = pki
        self.hosts: dict[tuple, ServerHost | Exception] = {}

    def get(self, server: ServerPeer, scenario: Scenario, profile: str) -> ServerHost:
        key = listener_key(server, scenario, profile)
        if isinstance(self.hosts.get(key), ServerHost) and not self.hosts[key].alive:
            self.hosts.pop(key).close()  # the server crashed or exited during an earlier cell: that cell paid, start anew
        if key not in self.hosts:
            try:
                self.hosts[key] = ServerHost(server, server_context(self.pki, scenario), profile, scenario.hostile,
                                             TokenAuth() if scenario.token else None)
            except Exception as exc:  # remembered: one broken server start costs its cells, not the run
                self.hosts[key] = exc
        host = self.hosts[key]
        if isinstance(host, Unsupported):
            raise host
        if isinstance(host, Exception):
            raise RuntimeError(f"server {server.name} did not start: {type(host).__name__}: {host}")
        return host

    def close(self) -> None:
        """All listeners stop at once: a library's stop can wait out its grace for open connections
        (aiohttp's shutdown_timeout), and one after another those waits would add up."""
        hosts = [host for host in self.hosts.values() if isinstance(host, ServerHost)]
        for host, stopping in [(host, host.stop()) for host in hosts]:
            host.join(stopping)


_payloads: dict[int, bytes] = {}


def payload(size: int) -> bytes:
    if size not in _payloads:
        _payloads[size] = os.urandom(size)
    return _payloads[size]


def _describe(got) -> str:
    return f"{type(got).__name__} of {len(got)}" if isinstance(got, (str, bytes)) else repr(got)


async def run_step(conn: Connection, op: str, *args) -> str | None:
    """Runs one I/O step; returns None if it behaved, else what went wrong."""
    if op in ("text", "binary"):
        message = args[0] if op == "text" else payload(args[0])
        await conn.send(message)
        got = await conn.recv()
        return None if got == message else f"sent {_describe(message)}, got back {_describe(got)}"
    if op == "burst":
        sent = [f"message {i}" for i in range(args[0])]
        for message in sent:
            await conn.send(message)
        for i, message in enumerate(sent):
            got = await conn.recv()
            if got != message:
                return f"message {i}: expected {message!r}, got {got!r}"
        return None
    if op == "ping":
        pong = await conn.ping(args[0].encode())
        return None if pong == args[0].encode() else f"pong carried {pong!r}"
    if op == "close":
        await conn.close(*args)
        return None  # what the server received is checked once its side has settled
    if op == "server-close":
        await conn.send(f"{CLOSE_COMMAND} {args[0]} {args[1]}")
        try:
            got = await conn.recv()
        except Closed as closed:
            if (closed.code, closed.reason) == tuple(args):
                return None
            return f"closed with {closed.code}/{closed.reason!r}, expected {args[0]}/{args[1]!r}"
        return f"expected a close, got {_describe(got)}"
    raise ValueError(f"unknown I/O op {op!r}")


class _ClientRun:
    """The client side of one cell, on its own thread and event loop."""

    def __init__(self, spec: CellSpec, url: str, tls: ClientTLS, deadline: float, timeout: float | None,
                 control: ServerControl | None = None):
        self.spec, self.url, self.tls, self.deadline, self.timeout = spec, url, tls, deadline, timeout
        self.control = control
        self.connected = False
        self.exc: BaseException | None = None
        self.steps: list[Step] = []
        self.upgrade_t: float | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.task: asyncio.Task | None = None
        self.total_s = 0.0
        self.pending_tasks: int | None = None  # tasks still pending on the loop when it was closed
        self.transport: str | None = None  # socketio family: the transport that carried the session
        self.error: ErrorInfo | None = None  # what the client's user saw, if it failed
        self.warnings: list[str] = []  # ResourceWarnings of a client process (isolate.py)

    def run(self, recorder: observe.CellRecorder, inherit: bool = False) -> None:
        self.t0 = recorder.t0
        observe.bind_thread(recorder, inherit=inherit)
        self.loop = asyncio.new_event_loop()
        try:
            self.task = self.loop.create_task(self._drive())
            self.loop.run_until_complete(self.task)
        except BaseException as exc:  # cancelled at the deadline, or worse
            self.exc = self.exc or exc
        finally:
            try:
                # closed transports finish closing on the next loop iterations (aiohttp#1115)
                self.loop.run_until_complete(asyncio.sleep(0))
                self.loop.run_until_complete(asyncio.sleep(0))
                self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            except BaseException:
                pass
            self.pending_tasks = sum(not t.done() for t in asyncio.all_tasks(self.loop))
            self.loop.close()

    async def _drive(self) -> None:
        peer, variant = self.spec.client.peer, self.spec.client.variant
        closed = False
        try:
            conn = await peer.connect(variant, self.url, self.tls, self.spec.profile, self.timeout)
        except Exception as exc:
            self.exc = exc
            return
        self.connected = True
        self.upgrade_t = time.perf_counter() - self.t0
        self.transport = getattr(conn, "transport", None)
        try:
            for op, *args in io_steps(self.spec):
                start = time.perf_counter()
                try:
                    if op == "reconnect":  # the harness's hand on the server: not in run_step, which reproducers copy
                        problem = await self.spec.client.peer.reconnect_step(conn, self.control, *args)
                    else:
                        problem = await run_step(conn, op, *args)
                except Exception as exc:
                    self.exc = exc
                    problem = _said(exc)
                    took = time.perf_counter() - start
                    # a slow failure (a call() that sits out its own timeout on a dropped connection) says how slow
                    problem += f" (after {took:.3g} s)" if took >= 1 else ""
                self.steps.append(Step(op=op, ok=problem is None, detail=problem,
                                       ms=round((time.perf_counter() - start) * 1000, 2)))
                closed = closed or op in ("close", "server-close")
                if problem:
                    break
        finally:
            if not closed:
                try:
                    await conn.close(*FINAL_CLOSE)
                except Exception:
                    pass

    def stop(self, recorder: observe.CellRecorder) -> None:
        """At the deadline: cancel what runs on the client's loop, and shut down the cell's
        blocking client sockets so a sync call stuck in recv/send returns and its thread ends."""
        if self.loop and self.task and not self.loop.is_closed():
            try:
                self.loop.call_soon_threadsafe(self.task.cancel)
            except RuntimeError:
                pass
        for sock in list(recorder.client_sockets):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # already closed


def unsupported_reason(spec: CellSpec) -> str | None:
    """Why the client cannot express the cell's scenario, or None."""
    peer = spec.client.peer
    if peer.handshake_only:
        return None if spec.scenario.group in HANDSHAKE_GROUPS else peer.handshake_only
    if spec.scenario.sends_headers and "headers" in peer.unsupported:
        return peer.unsupported["headers"]
    return next((peer.unsupported[op] for op, *_ in spec.scenario.io if op in peer.unsupported), None)


@functools.cache
def unresolvable(host: str) -> str | None:
    """Why this machine cannot run a scenario whose URL names `host` (an absolute name, `localhost.`,
    needs a resolver that answers it: /etc/hosts alone does not), or None."""
    try:
        socket.getaddrinfo(host, None)
    except OSError as exc:
        return f"this machine's resolver does not answer {host!r} ({exc}): the scenario needs one that does"
    return None


def io_steps(spec: CellSpec) -> tuple[tuple, ...]:
    return () if spec.client.peer.handshake_only else spec.scenario.io


def harness_failure(spec: CellSpec, exc: BaseException, deadline: float, versions: dict[str, str]) -> Cell:
    """A cell the harness itself could not run (an exception outside any peer): ERROR, never blamed
    on a library, and the run goes on."""
    obs = Observation(events=[], harness_error=f"{type(exc).__name__}: {exc}")
    return _result(spec, obs, Deadline(seconds=harness_deadline(spec, deadline), source="harness"), None, versions)


def harness_deadline(spec: CellSpec, deadline: float) -> float:
    """The run's deadline as this cell's peers and scenario scale it."""
    return deadline * spec.scenario.deadline_scale * spec.server.deadline_scale * spec.client.peer.deadline_scale


def library_clock(spec: CellSpec) -> Clock | None:
    """The timer of the library's own the cell waits on, if any: in the hostile groups, the peer
    under test's timeout for the wait its hostile peer leaves it in; elsewhere the longest of the
    client's own timers its `waits` names for the cell."""
    scenario, client = spec.scenario, spec.client
    if scenario.hostile is not None:
        stage = STAGES[scenario.hostile]
        if HOSTILE_GROUPS[scenario.group] == "client":  # the harness plays the client: the server is judged
            return spec.server.clock(stage, spec.server.own_timeouts())
        return client.peer.clock(stage, client.peer.own_timeouts(client.variant))
    stages = client.peer.waits(client.variant, scenario)
    timeouts = client.peer.own_timeouts(client.variant) if stages else {}
    clocks = [client.peer.clock(stage, timeouts) for stage in stages]
    return max((c for c in clocks if c is not None and c.seconds is not None), key=lambda c: c.seconds, default=None)


def cell_deadline(spec: CellSpec, deadline: float) -> Deadline:
    """How long the runner waits for the cell, and on whose clock: the library's own timer plus a
    margin where it waits on one (library_clock) that the matrix waits out; else the harness's deadline,
    which then records the library's timer that is too long, or the unset ones it has for this wait."""
    harness = round(harness_deadline(spec, deadline), 3)
    clock = library_clock(spec)
    if clock is None:
        return Deadline(seconds=harness, source="harness")
    if clock.seconds is None:
        return Deadline(seconds=harness, source="harness", timeout=clock.timeout)
    seconds = clock.seconds + max(CLOCK_MARGIN_S, CLOCK_MARGIN * clock.seconds)
    if seconds > LONGEST_WAIT_S:
        return Deadline(seconds=harness, source="harness", timeout=clock.timeout, documented_s=clock.seconds)
    return Deadline(seconds=round(max(seconds, harness), 3), source="library", timeout=clock.timeout,
                    documented_s=clock.seconds)


def run_cell(spec: CellSpec, servers: ServerPool | None, pki: PKI, deadline: float, versions: dict[str, str],
             side_by_side: bool = False) -> Cell:
    """One cell. `side_by_side`: it runs beside others in this process (hostile.Batch): it gets a
    listener of its own and binds its threads to its recorder instead of being the current cell."""
    started = time.perf_counter()
    scenario = spec.served
    clock = cell_deadline(spec, deadline)
    # what the library is handed for its opening handshake: the cell's deadline; on the library's clock a
    # little more, so that the runner, not a handed timeout, ends a wait (verdict.judge tells whose it was)
    timeout = clock.seconds + CLIENT_STOP_GRACE_S if clock.source == "library" else clock.seconds
    unsupported = unsupported_reason(spec)
    token = f"{os.getpid()}-{next(_tokens)}"
    recorder = observe.begin(token, current=not side_by_side)
    skipped = spec.server.missing() or spec.client.peer.missing_for(spec.client.variant) or unresolvable(scenario.host)
    obs = Observation(events=recorder.events, unsupported=unsupported, skipped=skipped, handed_s=timeout)
    client: _ClientRun | None = None
    watch, leaked = contextlib.ExitStack(), None
    measure_leaks = scenario.group in LEAK_GROUPS and not side_by_side  # process-wide counts: only alone
    try:
        if not (unsupported or skipped):
            control = None
            # a server of its own, stopped with the cell: its steps drop or restart it, the cell runs beside
            # others, or what an earlier cell left behind could hold its listener (ServerPeer.private_listener)
            if side_by_side or shared_listener(spec) is None:
                host = ServerHost(spec.server, server_context(pki, scenario), spec.profile, scenario.hostile,
                                  TokenAuth() if scenario.token else None, cell=recorder if side_by_side else None)
                watch.callback(host.close)
                control = ServerControl(host, pki, scenario, recorder) if scenario.private_server else None
            else:
                host = servers.get(spec.server, scenario, spec.profile)
            if measure_leaks:
                warned = watch.enter_context(leaks.resource_warnings([]))
                before = leaks.socket_inodes(leaks.with_children(_processes(host, spec))), leaks.server_tasks(host.loop)
            client = drive_client(spec, host.port, token, client_tls(pki, scenario, spec.client), clock.seconds,
                                  timeout, recorder, obs, control, side_by_side)
            obs.server_crash = host.crash
            _check_close(obs, scenario)
            if measure_leaks:
                client.exc = None  # the harness lets go of the error: what stays open, the library holds
                leaked = _leaks(host, client, spec, *before, warned + client.warnings)
    except Unsupported as exc:  # the server cannot express the scenario's settings
        obs.unsupported = str(exc)
    except Exception as exc:
        obs.harness_error = f"{type(exc).__name__}: {exc}"
    finally:
        watch.close()
        observe.end(recorder)
    cell = _result(spec, obs, clock, client, versions)
    cell.leaks = leaked
    # what the cell cost its runner, beyond the client's own `total`: a first use's server start,
    # settling the server's side, counting leaks, stopping a private server
    cell.timings["cell"] = round((time.perf_counter() - started) * 1000, 2)
    return cell


def drive_client(spec: CellSpec, port: int, token: str, tls: ClientTLS, deadline: float, timeout: float | None,
                 recorder: observe.CellRecorder, obs: Observation, control: ServerControl | None = None,
                 side_by_side: bool = False) -> _ClientRun:
    """Run the cell's client until it finishes or the deadline, stop it then (a blocking
    library's in its own process: isolate.py), and put what its user saw into `obs`.
    `timeout` is what the library itself is given; `control`, the cell's private server, if it has one;
    `side_by_side`: the cell runs beside others in this process (hostile.Batch)."""
    url = cell_url(spec.scenario, port, token)
    spec.client.peer.prepare(spec.client.variant, tls)  # before the clock: a browser boots once, not per cell
    # A blocking library's client runs in a client process, so that one that cannot be stopped is
    # killed; but not in the batch, whose cells run side by side: a client process serving a dozen
    # of them on a loaded machine noticed a fault seconds late. There a sync client blocked in a
    # socket call is stopped by shutting its sockets down.
    isolated = spec.client.peer.blocking and not side_by_side
    # a client that needs a process environment of its own runs in a client process started with it (a
    # foreign client's own process gets it from its peer): never in this one, where other cells run
    isolated = isolated or bool(tls.environment and not spec.client.peer.foreign)
    if spec.client.variant in spec.client.peer.own_process:  # it sets process-wide state itself: a process of its own
        tls = replace(tls, environment=(*tls.environment, ("MTLS_MATRIX_PROCESS_OF", spec.client.name)))
        isolated = True
    if isolated:
        client = _run_isolated(spec, url, tls, deadline, timeout, recorder, obs, control)
    else:
        client = run_client(spec, url, tls, deadline, timeout, recorder, obs, control, side_by_side)
    _settle(recorder, client, spec.scenario, spec.server)
    obs.connected = client.connected
    obs.steps = client.steps
    obs.error = client.error
    obs.took_s = client.total_s
    return client


def run_client(spec: CellSpec, url: str, tls: ClientTLS, deadline: float, timeout: float | None,
               recorder: observe.CellRecorder, obs: Observation, control: ServerControl | None = None,
               side_by_side: bool = False) -> _ClientRun:
    """The client on its own thread until it finishes or the deadline; stopped then. `side_by_side`:
    threads the library starts from it belong to the cell too (the cell is not the current one)."""
    client = _ClientRun(spec, url, tls, deadline, timeout, control)
    recorder.t0 = time.perf_counter()  # run_client's own deadline: from the moment it runs
    thread = threading.Thread(target=client.run, args=(recorder, side_by_side), name=f"client:{spec.id}", daemon=True)
    thread.start()
    thread.join(deadline)
    if thread.is_alive():
        obs.timed_out = True
        seen, steps = len(recorder.events), len(client.steps)
        client.stop(recorder)
        thread.join(CLIENT_STOP_GRACE_S)
        # what stopping the client caused (events, a step it broke off) is the harness's doing, not the library's
        del recorder.events[seen:]
        del client.steps[steps:]
        # a client blocked outside a socket (a lock, a sleep) cannot be stopped from here: in a
        # client process (isolate.py) it is killed with its process; in this one it is left behind
        obs.client_after_deadline = "abandoned" if thread.is_alive() else "stopped"
    client.total_s = time.perf_counter() - recorder.t0
    if client.exc is not None and not obs.timed_out:
        client.error = user_error(spec, client.exc)
    return client


def _said(exc: BaseException) -> str:
    """A step's exception as its detail, in the library's words (as user_error reads it)."""
    if isinstance(exc, Closed) and exc.__cause__ is not None:
        exc = exc.__cause__
    elif getattr(exc, "shown", None):
        return ": ".join(exc.shown)
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def user_error(spec: CellSpec, exc: BaseException) -> ErrorInfo:
    """What the client's user saw: the library's own exception, never an adapter's (Closed, a check of
    the harness's); for an end the library reported without raising, what reported it (`shown`)."""
    user_exc = exc.__cause__ if isinstance(exc, Closed) and exc.__cause__ else exc
    hint = spec.client.peer.canonical(user_exc)
    if isinstance(exc, Closed) and exc.code is not None:  # normalised by the adapter
        hint = CLOSE_CODES.get(exc.code, f"CLOSED_{exc.code}")
    if getattr(user_exc, "shown", None):
        return signal_info(user_exc, user_exc.shown, hint or canonical_from_exception(user_exc))
    if isinstance(user_exc, NoOutcome):  # the user was told nothing
        return ErrorInfo(canonical="TIMEOUT", message=str(user_exc))
    info = error_info(user_exc, hint)
    info.attributes = spec.client.peer.error_attributes(user_exc)
    return info


def _run_isolated(spec: CellSpec, url: str, tls: ClientTLS, deadline: float, timeout: float | None,
                  recorder: observe.CellRecorder, obs: Observation, control: ServerControl | None = None) -> _ClientRun:
    """run_client in a client process; killed with it if it cannot be stopped."""
    if control is not None:
        raise RuntimeError("a client process cannot drive the cell's private server (a reconnect step)")
    request = dict(spec=spec, url=url, tls=tls, deadline=deadline, timeout=timeout,
                   warnings=spec.scenario.group in LEAK_GROUPS)
    reply = isolate.POOL.call(request, deadline + CLIENT_STOP_GRACE_S + CLIENT_PROCESS_REPLY_GRACE_S,
                              started=lambda: setattr(recorder, "t0", time.perf_counter()),
                              environ=dict(tls.environment))
    client = _ClientRun(spec, url, tls, deadline, timeout)
    if reply is None:  # no answer at all: the process was killed
        obs.timed_out, obs.client_after_deadline = True, "killed"
        client.total_s = time.perf_counter() - recorder.t0
        return client
    recorder.events.extend(reply["events"])
    for name in ("connected", "steps", "upgrade_t", "total_s", "pending_tasks", "error", "warnings"):
        setattr(client, name, reply[name])
    obs.timed_out = reply["timed_out"]
    obs.client_after_deadline = "killed" if reply["after_deadline"] == "abandoned" else reply["after_deadline"]
    return client


def client_in_child(spec: CellSpec, url: str, tls: ClientTLS, deadline: float, timeout: float | None,
                    warnings: bool) -> dict:
    """A client process's side of _run_isolated (isolated_client.py): one cell, reported back.
    `warnings`: collect ResourceWarnings (process-wide: only for cells that run alone)."""
    recorder = observe.begin(f"client-{next(_tokens)}", current=False)  # run_client binds its thread
    obs = Observation(events=recorder.events)
    warned: list[str] = []
    try:
        with leaks.resource_warnings(warned) if warnings else contextlib.nullcontext():
            client = run_client(spec, url, tls, deadline, timeout, recorder, obs)
            client.exc = None  # what the library still holds after this counts as its leak
    finally:
        observe.end(recorder)
    return dict(events=recorder.events, connected=client.connected, steps=client.steps, upgrade_t=client.upgrade_t,
                total_s=client.total_s, pending_tasks=client.pending_tasks, error=client.error, warnings=warned,
                timed_out=obs.timed_out, after_deadline=obs.client_after_deadline,
                reusable=obs.client_after_deadline != "abandoned")


def _processes(host: ServerHost, spec: CellSpec) -> tuple[int, ...]:
    """The cell's peers' processes besides this one (the listener's copy of the server holds its process)."""
    return (*host.peer.processes(), *spec.client.peer.processes())


def _leaks(host: ServerHost, client: _ClientRun, spec: CellSpec, sockets_before: set[str],
           tasks_before: int | None, warned: list[str]) -> Leaks | None:
    """What the cell's connection left behind, after at most LEAK_SETTLE_S (FOREIGN_LEAK_SETTLE_S
    with a peer in another process) for the peers to finish closing (the server's loop may still be
    winding down; an in-process client's is closed already)."""
    processes = _processes(host, spec)
    end = time.perf_counter() + (FOREIGN_LEAK_SETTLE_S if processes else LEAK_SETTLE_S)
    tree = leaks.with_children(processes)
    # an in-process client's loop is closed by now: a socket its side still holds has nothing left
    # to close it but a garbage collection, so waiting for it only delays the count
    client_over = client.loop is not None and client.loop.is_closed() and not spec.client.peer.processes()
    while True:
        client_sockets, server_sockets = leaks.connection_sockets(host.port, sockets_before, tree)
        tasks_now = leaks.server_tasks(host.loop) if host.alive else None
        server_tasks = max(0, tasks_now - tasks_before) if tasks_now is not None and tasks_before is not None else 0
        if (client_over or not client_sockets) and not (server_sockets or server_tasks) or time.perf_counter() >= end:
            break
        time.sleep(0.005)
    found = Leaks(client_sockets=client_sockets, server_sockets=server_sockets, client_tasks=client.pending_tasks or 0,
                  server_tasks=server_tasks, resource_warnings=_attributed(warned, host.port))
    return found if found != Leaks() else None


def _settle(recorder: observe.CellRecorder, client: _ClientRun, scenario: Scenario, server: ServerPeer) -> None:
    """Wait (briefly) until the server has told its side: its handshake outcome, and the close
    it received when the script closes. Events arrive from the server's thread; a foreign server's
    through its pipe (`piped`: its handshake outcome is awaited even before its `accept` arrived),
    a proxy's from its log, which ends each connection's story with `story_end`."""
    wants_close = any(op == "close" for op, *_ in scenario.io) and client.connected
    end = time.perf_counter() + SETTLE_S
    while time.perf_counter() < end:
        # When the client's own verification failed, the server saw only an alert or an EOF
        # (asyncio records nothing): its view adds nothing to the judgement, so do not wait.
        # A client that merely received an alert must wait: the server may send the alert
        # from inside do_handshake (blocking sockets) before the probe records its error.
        client_error = recorder.find("client", "handshake-error")
        own_check_failed = client_error is not None and verdict_own_check_failed(client_error.data)
        needed = (server.piped or recorder.find("server", "accept")) and not own_check_failed
        handshake = any(e.side == "server" and e.kind.startswith("handshake") for e in recorder.events)
        closed = recorder.find("server", "handler-close")
        told = not server.story_end or recorder.find("server", server.story_end)
        # a connected client means the handler ran; an out-of-process server's word of it may still be on its way
        handler = not client.connected or recorder.find("server", "handler")
        if (not needed or handshake) and (not wants_close or closed) and told and handler:
            return
        time.sleep(0.002)


def _attributed(messages: list[str], port: int) -> list[str]:
    """A warning about a socket connected to another listener was emitted during this cell (the
    object was collected then) but belongs to an earlier one: say so; and of the transport that
    held that socket (same descriptor), whose message names no port."""
    earlier = set()
    for message in messages:
        match = re.search(r"fd=(\d+).*raddr=\('[^']*', (\d+)", message)
        if match and int(match.group(2)) != port:
            earlier.add(match.group(1))
    return [leaks.EARLIER + m if (match := re.search(r"fd=(\d+)", m)) and match.group(1) in earlier else m
            for m in messages]


def _check_close(obs: Observation, scenario: Scenario) -> None:
    for step in obs.steps:
        if step.op == "close" and step.ok:
            expected = next(args for op, *args in scenario.io if op == "close")
            seen = obs.event("server", "handler-close")
            got = (seen.data.get("code"), seen.data.get("reason")) if seen else None
            if got != tuple(expected):
                step.ok = False
                step.detail = f"the server received close {got}, expected {tuple(expected)}"


def _tls_side(obs: Observation, side: str) -> TLSSide:
    ok = obs.event(side, "handshake-ok")
    if ok:
        return TLSSide(handshake="ok", version=ok.data.get("version"), cipher=ok.data.get("cipher"),
                       peer_cn=ok.data.get("peer_cn"))
    bad = obs.event(side, "handshake-error")
    if bad:
        return TLSSide(handshake="error", error=ErrorInfo(
            canonical=canonical_from_tls(bad.data), type=bad.data.get("type"), message=bad.data.get("message")))
    return TLSSide(handshake="none")


def _result(spec: CellSpec, obs: Observation, deadline: Deadline, client: _ClientRun | None, versions) -> Cell:
    judgement = judge(spec.scenario, obs, deadline)
    if judgement.verdict not in (Verdict.PASS, Verdict.SKIPPED, Verdict.UNSUPPORTED):
        # what went wrong inside the server that only it could tell (a foreign server's error or crash)
        told = "; ".join(e.data["message"] for e in obs.events if e.side == "server" and e.kind == "error"
                         and e.data.get("message"))
        judgement.reason += f" (the server said: {told})" if told else ""
    handler = obs.event("server", "handler")
    closed = obs.event("server", "handler-close")
    timings = {}
    for name, event in (("tcp", obs.event("server", "accept")),
                        ("tls-handshake", obs.event("client", "handshake-ok", "handshake-error")),
                        ("handler", handler)):
        if event:
            timings[name] = round(event.t * 1000, 2)
    if client and client.upgrade_t is not None:
        timings["upgrade"] = round(client.upgrade_t * 1000, 2)
    if obs.steps:
        timings["io"] = round(timings.get("upgrade", 0) + sum(s.ms or 0 for s in obs.steps), 2)
    if client:
        timings["total"] = round(client.total_s * 1000, 2)
    error = obs.error
    if error is None and obs.timed_out:
        error = ErrorInfo(canonical="TIMEOUT", message=f"no outcome within {deadline.seconds:g}s")
    proxy = obs.event("server", "proxy-response")
    refused = judgement.rejection is not None and judgement.rejection.by == "server" and not obs.connected
    repeated = evidence.repeated(obs.events, refused, spec.client.peer.requests.get(spec.client.variant, 1))
    saw = ServerSaw(
        accepted_tcp=obs.event("server", "accept", "proxy-done") is not None,  # a proxy logs connections it accepted
        tls=_tls_side(obs, "server"),
        handler_ran=handler is not None,
        handler_peer_cn=handler.data.get("peer_cn") if handler else None,
        handler_identity_error=handler.data.get("identity_error") if handler else None,
        close_code=closed.data.get("code") if closed else None,
        close_reason=closed.data.get("reason") if closed else None,
        transport=next((e.data["transport"] for e in reversed(obs.events)
                        if e.side == "server" and e.kind in ("transport", "handler") and "transport" in e.data), None),
        proxy_status=proxy.data.get("status") if proxy else None,
        proxy_verify=proxy.data.get("verify") if proxy else None,
        crash=obs.server_crash,
    )
    return severity.weigh(Cell(
        id=spec.id, server=f"server:{spec.server.name}", client=f"client:{spec.client.name}",
        scenario=spec.scenario.name, group=spec.scenario.group, profile=spec.profile,
        family=spec.server.family, tags=sorted(spec.scenario.tags | {spec.scenario.tls_tag}),
        expectation=spec.scenario.expect.describe(), verdict=judgement.verdict, phase=judgement.phase,
        reason=judgement.reason, error=error or ErrorInfo(),
        rejection=judgement.rejection, client_tls=_tls_side(obs, "client"), server_saw=saw, steps=obs.steps,
        timings=timings, repro=spec.repro, client_after_deadline=obs.client_after_deadline, hostile=obs.hostile,
        transport=client.transport if client else None,
        advisories=[*judgement.advisories, *([repeated] if repeated else [])],
        deadline=judgement.decided_by or deadline,
        wire=evidence.wire(obs.events, obs.error, obs.connected, obs.timed_out, timings.get("total")),
        handshakes=evidence.handshakes(obs.events),
        versions={name: versions.get(name, version) for peer in (spec.server, spec.client.peer)
                  for name, version in peer.versions().items()},
    ), spec.scenario, spec.client.peer.controls.get(spec.client.variant))
