"""A client process for blocking (sync) client libraries, so that a hung one can be killed.

A thread cannot be killed. An async client is cancelled at the deadline, and a sync client
blocked in a socket call returns once the runner shuts its socket down, but a sync client blocked
anywhere else (a lock, a sleep, a C call) would be left running. So the cells of a `ClientPeer`
with `blocking = True` run their client in a client process: it runs the very same client code
(cell.run_client, with the TLS probe, each cell on its own thread as in-process) and sends back
what happened. A client process in which a client could not be stopped takes no more cells and
is killed (SIGKILL) as soon as the cells still running in it have answered; a client process that
does not answer by the deadline plus the stop grace is killed at once. One process serves every
cell of its parent (the hostile batch's cells side by side), so a cell costs a round trip over a
pipe, not a process start; it starts with the run's first such cell and its start does not count
against any cell's deadline.

A cell whose client needs a process environment of its own (peers.ClientTLS.environment: a variant
that reads its trust anchors from SSL_CERT_FILE, an `environment` scenario) gets a client process
started with that environment added to the run's scrubbed one, before any library is imported there
(aiohttp builds its default SSL contexts at import); such a process serves only cells that ask for
the same environment, so it never leaks into another cell, nor into this process.

A client process is forked from the run's fork server when there is one (forkserver.py), with the
libraries already imported; one that needs an environment of its own starts afresh. It dies with
its parent: it exits when its stdin closes, and is killed when the process that started it dies
(PR_SET_PDEATHSIG; a forked one when that process's connection to the fork server closes).
"""

from __future__ import annotations

import itertools
import os
import pickle
import struct
import subprocess
import sys
import threading
from concurrent.futures import Future, TimeoutError
from typing import Any, BinaryIO, Callable

from mtls_matrix import forkserver
from mtls_matrix.timing import CLIENT_PROCESS_START_S

CLIENT_MODULE = "mtls_matrix.isolated_client"
_HEADER = struct.Struct("!I")
READY = "ready"


def send(stream: BinaryIO, obj: Any) -> None:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_HEADER.pack(len(data)) + data)
    stream.flush()


def receive(stream: BinaryIO) -> Any:
    header = stream.read(_HEADER.size)
    if len(header) < _HEADER.size:
        raise EOFError("the other side closed the pipe")
    (size,) = _HEADER.unpack(header)
    return pickle.loads(stream.read(size))


class ClientProcess:
    def __init__(self, environ: dict[str, str] | None = None) -> None:
        self.environ = dict(environ or {})
        env = dict(os.environ, **self.environ, PYTHONPATH=forkserver.python_path())
        server = os.environ.get(forkserver.ENV)
        # forked with the imports done, unless it needs an environment of its own at import
        forked = server and not self.environ and forkserver.Forked.start(server, CLIENT_MODULE, env)
        self.proc = forked or subprocess.Popen([sys.executable, "-m", CLIENT_MODULE], stdin=subprocess.PIPE,
                                               stdout=subprocess.PIPE, env=env)
        self.ready: Future = Future()
        self.replies: dict[int, Future] = {}
        self.retiring = False  # a client in it could not be stopped: no new cells, killed once idle
        self._ids = itertools.count()
        self._lock = threading.Lock()
        threading.Thread(target=self._read, name=f"client-process:{self.proc.pid}", daemon=True).start()

    def _read(self) -> None:
        try:
            while True:
                cell_id, reply = receive(self.proc.stdout)
                future = self.ready if reply == READY else self.replies.pop(cell_id, None)
                if future is not None:
                    future.set_result(reply)
        except (OSError, EOFError, ValueError, pickle.UnpicklingError):
            pass  # the process ended: whoever still waits gets no reply
        if not self.ready.done():
            self.ready.set_exception(OSError(f"client process {self.proc.pid} ended before it was ready"))
        for future in list(self.replies.values()):
            future.set_result(None)

    @property
    def usable(self) -> bool:
        return not self.retiring and self.proc.poll() is None

    def call(self, request: dict, limit: float, started: Callable[[], None]) -> dict | None:
        """The reply to one cell, or None if there was none within `limit` seconds after it was
        sent (then the process is killed, and with it the client)."""
        future: Future = Future()
        try:
            self.ready.result(CLIENT_PROCESS_START_S)
            with self._lock:
                cell_id = next(self._ids)
                self.replies[cell_id] = future
                started()
                send(self.proc.stdin, (cell_id, request))
            reply = future.result(limit)
        except (OSError, TimeoutError):
            reply = None
        if reply is None:
            self.kill()
            return None
        if not reply["reusable"]:
            self.retiring = True
        if self.retiring and not self.replies:
            self.kill()
        return reply

    def kill(self) -> None:
        self.retiring = True
        try:
            self.proc.kill()
        except OSError:
            pass
        self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout):
            try:
                stream.close()
            except OSError:
                pass


class Pool:
    """The client process of this process, replaced when it had to be killed."""

    def __init__(self) -> None:
        self._processes: list[ClientProcess] = []
        self._lock = threading.Lock()

    def pids(self) -> list[int]:
        with self._lock:
            return [p.proc.pid for p in self._processes if p.proc.poll() is None]

    def call(self, request: dict, limit: float, started: Callable[[], None],
             environ: dict[str, str] | None = None) -> dict | None:
        """The cell's reply, from a client process whose added environment is exactly `environ`."""
        environ = dict(environ or {})
        with self._lock:
            self._processes = [p for p in self._processes if p.proc.poll() is None]
            process = next((p for p in self._processes if p.usable and p.environ == environ), None)
            if process is None:
                process = ClientProcess(environ)
                self._processes.append(process)
        return process.call(request, limit, started)

    def close(self) -> None:
        with self._lock:
            processes, self._processes = self._processes, []
        for process in processes:
            process.kill()


POOL = Pool()
