"""What happened inside a cell, recorded as it happens, from both sides.

TLS events come from a probe on the `ssl` module. `SSLContext.sslobject_class` and
`sslsocket_class` are documented extension points; subclasses that record the outcome of
`do_handshake()` (and the first TLS error on read, where a TLS 1.3 client meets the server's
rejection) let the harness see each side's real handshake result whichever library built the
context, and however the library words it afterwards. asyncio servers do not even log a failed
handshake, so without this the server side of a rejection would be invisible. The probe only
records: the handshake, the verification and the bytes are OpenSSL's, untouched.

Each event is attributed to the cell that was current when the connection was created. Cells of
one process run one at a time (see DESIGN.md section 4), so that attribution is exact. Fault
cells (scenarios.FAULT_GROUPS) run side by side, each with its own listener: they bind their
client thread and their listener's thread to their cell (`bind_thread`), and a thread's binding
wins over the current cell.
Application-level events (the server handler ran, what it saw) are attributed by the cell token
the client puts in the URL.
"""

from __future__ import annotations

import itertools
import ssl
import threading
import time
import weakref
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from cryptography.x509.oid import NameOID

_QUIET = (ssl.SSLWantReadError, ssl.SSLWantWriteError, ssl.SSLZeroReturnError)


@dataclass
class Event:
    t: float  # seconds since the cell started
    side: str  # "server" | "client"
    kind: str  # accept | handshake-ok | handshake-error | read-error | handler | handler-close | ...
    data: dict[str, Any]


@dataclass
class CellRecorder:
    token: str
    t0: float = field(default_factory=time.perf_counter)
    events: list[Event] = field(default_factory=list)
    # the cell's client-side blocking TLS sockets: what the runner shuts down to stop a hung sync client
    client_sockets: weakref.WeakSet = field(default_factory=weakref.WeakSet)

    def add(self, side: str, kind: str, **data: Any) -> None:
        self.events.append(Event(round(time.perf_counter() - self.t0, 6), side, kind, data))

    def find(self, side: str, kind: str) -> Event | None:
        return next((e for e in self.events if e.side == side and e.kind == kind), None)


_lock = threading.Lock()
_connections = itertools.count(1)  # the probe's number for each server-side TLS connection
_current: CellRecorder | None = None
_by_token: dict[str, CellRecorder] = {}
_thread = threading.local()  # .recorder: the cell this thread's connections belong to


def begin(token: str, current: bool = True) -> CellRecorder:
    """A new cell's recorder; `current=False` for a cell that binds its own threads instead."""
    global _current
    recorder = CellRecorder(token)
    with _lock:
        if current:
            _current = recorder
        _by_token[token] = recorder
    return recorder


def bind_thread(recorder: CellRecorder | None, inherit: bool = False) -> None:
    """Connections created on the calling thread from now on belong to `recorder`'s cell. `inherit`:
    so do those of the threads it starts (a library's own: engine.io's read loop, werkzeug's request
    threads), for a cell that runs beside others and so is not the current cell (install())."""
    _thread.recorder = recorder
    _thread.inherit = inherit


def side_by_side() -> bool:
    """Is the calling thread a cell's that runs beside others (bound with `inherit`)?"""
    return getattr(_thread, "inherit", False)


def _start_bound(thread: threading.Thread, _start=threading.Thread.start) -> None:
    """threading.Thread.start, under install(): a thread started by one bound with `inherit` is bound
    to the same cell before it runs."""
    if getattr(_thread, "inherit", False):
        recorder, run = _thread.recorder, thread.run

        def bound_run():
            bind_thread(recorder, inherit=True)
            run()

        thread.run = bound_run
    _start(thread)


def end(recorder: CellRecorder) -> None:
    global _current
    with _lock:
        if _current is recorder:
            _current = None
        _by_token.pop(recorder.token, None)


def thread_event(side: str, kind: str, **data: Any) -> None:
    """An event of the cell the calling thread is bound to (bind_thread), if any."""
    recorder = getattr(_thread, "recorder", None)
    if recorder is not None:
        recorder.add(side, kind, **data)


def connection_recorder() -> CellRecorder | None:
    """The cell a connection made now belongs to: the calling thread's binding, else the current
    cell (the probe's rule). Foreign peers (peers/foreign.py) capture it when their process
    reports a new connection, and attribute that connection's later TLS events to it."""
    return getattr(_thread, "recorder", None) or _current


def cell_event(side: str, kind: str, **data: Any) -> None:
    """An event that names no cell (a proxy's log line about a connection that sent no request)."""
    recorder = connection_recorder()
    if recorder is not None:
        recorder.add(side, kind, **data)


def server_event(token: str, kind: str, **data: Any) -> None:
    """Called by server handlers with the token from the request path."""
    with _lock:
        recorder = _by_token.get(token)
    if recorder is not None:
        recorder.add("server", kind, **data)


def subject_cn(der: bytes | None) -> str | None:
    if not der:
        return None
    names = x509.load_der_x509_certificate(der).subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return names[0].value if names else ""


def describe_ssl_error(exc: BaseException) -> dict[str, Any]:
    return {
        "type": type(exc).__name__,
        "message": str(exc),
        "reason": getattr(exc, "reason", None),
        "verify_code": getattr(exc, "verify_code", None),
        "verify_message": getattr(exc, "verify_message", None),
    }


class _Probe:
    """Mixin for SSLObject / SSLSocket: binds the current cell on first use, records outcomes."""

    def _mtls_recorder(self) -> CellRecorder | None:
        try:
            return self.__dict__["_mtls_bound"]
        except KeyError:
            self.__dict__["_mtls_bound"] = recorder = connection_recorder()
            if recorder is not None and self.server_side:
                # numbered, so that its events count as one connection (evidence.handshakes)
                self.__dict__["_mtls_connection"] = connection = next(_connections)
                recorder.add("server", "accept", connection=connection)
            elif recorder is not None and isinstance(self, ssl.SSLSocket):
                recorder.client_sockets.add(self)
            return recorder

    def _mtls_record(self, kind: str, **data: Any) -> None:
        recorder = self._mtls_recorder()
        if recorder is not None and self.server_side:
            recorder.add("server", kind, connection=self.__dict__.get("_mtls_connection"), **data)
        elif recorder is not None:
            recorder.add("client", kind, **data)

    def do_handshake(self, *args, **kwargs):
        self._mtls_recorder()  # bind before the first flight leaves
        try:
            result = super().do_handshake(*args, **kwargs)
        except _QUIET:
            raise
        except Exception as exc:
            # the version, where the ServerHello settled it (TLS 1.3 names its cipher there): a TLS 1.3
            # server that refuses the client's certificate does so after the client's handshake completed
            version = (self.cipher() or (None, None))[1]
            self._mtls_record("handshake-error", **describe_ssl_error(exc), **({"version": version} if version else {}))
            raise
        self._mtls_record(
            "handshake-ok",
            version=self.version(),
            cipher=(self.cipher() or (None,))[0],
            peer_cn=subject_cn(self.getpeercert(binary_form=True)),
        )
        return result

    def read(self, *args, **kwargs):
        try:
            return super().read(*args, **kwargs)
        except _QUIET:
            raise
        except Exception as exc:
            if not self.__dict__.get("_mtls_read_failed"):
                self.__dict__["_mtls_read_failed"] = True
                self._mtls_record("read-error", **describe_ssl_error(exc))
            raise


class ProbeSSLObject(_Probe, ssl.SSLObject):
    @classmethod
    def _create(cls, *args, **kwargs):
        obj = super()._create(*args, **kwargs)
        obj._mtls_recorder()  # asyncio creates the object when TCP is accepted: that is "accept"
        return obj


class ProbeSSLSocket(_Probe, ssl.SSLSocket):
    pass


def install() -> None:
    """Make every SSL context in this process create probed connections. Idempotent."""
    ssl.SSLContext.sslobject_class = ProbeSSLObject
    ssl.SSLContext.sslsocket_class = ProbeSSLSocket
    threading.Thread.start = _start_bound
