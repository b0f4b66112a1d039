"""python-socketio's sync Client (and, in usercode/socketio_asyncclient.py, its AsyncClient), given their
TLS settings each documented way (docs: "The Socket.IO Clients", the Client/AsyncClient reference for http_session,
ssl_verify and websocket_extra_options; requests' "SSL Cert Verification" for Session.verify/cert),
on the transports asked for.

A variant is WAY+TRANSPORT: the way the TLS settings pass, and the client's `transports=`
(`polling`, `websocket`, or `upgrade`: the library default, polling then websocket). The URL is
the server's with the namespace as its path, as the JavaScript client takes it; its query goes to
the server on every Engine.IO request. The echo protocol over Socket.IO events:
- send -> emit("echo", data) with an acknowledgement; the ack carries the echo, which recv returns
  (acks arrive in the order the server answered, so a burst checks ordering for real);
- close(code, reason) -> call("bye", {code, reason}) (acknowledged) then disconnect(): Socket.IO's
  disconnect carries no code or reason, so the app tells it first;
- server-close -> emit("close", {code, reason}): the server disconnects the client; recv raises
  Closed with the requested code/reason only if the library reports a server-initiated disconnect;
- ping: Engine.IO's heartbeat is internal, no API sends one.

disconnect() on the polling transport returns only when the pending long-poll GET ends: the server
drops the session on the client's CLOSE packet without answering that GET (engineio
AsyncSocket.receive: close(abort=True)), so the client waits out the GET's own timeout,
max(ping_interval, ping_timeout) + 5 = 30 s by default. The final close of a script that did not
close (FINAL_CLOSE) and the cleanup after a failed connect or a disconnect abort the engine.io
session instead (`sio.eio.disconnect(abort=True)`: the CLOSE packet is still queued, the client
just does not wait for the long-poll).

Reconnect: python-socketio reads `reconnection` when the connection drops, so the clients are
built with short reconnection delays and `reconnection=False`, and Connection.reconnect switches it
on while the server is disrupted; the cleanup switches it off again and ends a reconnection in
progress (`shutdown()`, which waits for it).
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time

import requests
import socketio

from mtls_matrix.protocol import FINAL_CLOSE, Closed, Connection, NoOutcome, parse_close_command
from mtls_matrix.usercode.socketio_client_common import (  # noqa: F401 (TIMEOUTS, CLIENT_URL_SCHEME: see usercode)
    CLIENT_RECONNECTION, CLIENT_URL_SCHEME, TIMEOUTS, ClientConnection, _client_refusals, _client_wait_timeout,
    _client_with_refusal, client_check_upgrade, client_connect_args, client_context,
)


def _client_shutdown_sync(sio) -> None:
    if hasattr(sio, "shutdown"):
        sio.shutdown()
    else:
        sio.reconnection = False
        sio.disconnect()


class ClientSyncConnection(ClientConnection):
    def __init__(self, *args):
        super().__init__(*args)
        self.inbox: queue.Queue = queue.Queue()
        self.sio.on("disconnect", self._on_disconnect, namespace=self.namespace)

    def _on_disconnect(self, reason=None):
        if not self.sio.reconnection:  # else the reconnect step is watching: not an end of the connection
            self.inbox.put(self._disconnected(reason))

    async def send(self, message):
        command = parse_close_command(message)
        if command:
            self.asked = command
            self.sio.emit("close", {"code": command[0], "reason": command[1]}, namespace=self.namespace)
        else:
            self.sio.emit("echo", message, namespace=self.namespace, callback=self.inbox.put)

    async def reconnect(self, disrupt, refuse):
        before, connected = self.sio.transport(), threading.Event()
        self.sio.on("connect", connected.set, namespace=self.namespace)
        self.sio.reconnection = True
        try:
            disrupt()
            # until it reconnects, or wait() returns: the connection ended and the reconnection gave up
            waiter = threading.Thread(target=self.sio.wait, name="socketio-wait", daemon=True)
            waiter.start()  # a wait() still blocked after the step is on a connection the cleanup ends
            end = time.monotonic() + self.timeout
            while waiter.is_alive() and not connected.wait(0.02) and time.monotonic() < end:
                pass
        finally:
            self.sio.reconnection = False
        return self._outcome(connected.is_set(), not waiter.is_alive(), refuse, before)

    async def recv(self):
        try:
            got = self.inbox.get(timeout=self.timeout)
        except queue.Empty:
            raise NoOutcome(f"no echo or disconnect within {self.timeout:g}s") from None
        if isinstance(got, Closed):
            self.cleanup()
            raise got
        return got

    async def close(self, code, reason):
        try:
            if (code, reason) != FINAL_CLOSE:  # the final close of a script is cleanup only (see above)
                self.sio.call("bye", {"code": code, "reason": reason}, namespace=self.namespace)  # its own timeout
                self.sio.disconnect()
        finally:
            self.cleanup()


def _client_connect_sync(way, transport, server, ca, cert, key, options, connect_args, timeout):
    # http_session: a requests.Session with cert=(chain, key) and verify=CA path; engineio copies
    # both into websocket-client's sslopt for the websocket transport.
    # websocket_extra_options: {"sslopt": {"context": ctx}} reaches websocket-client only;
    # polling uses the library's own requests.Session (default trust store, no certificate).
    # ssl_verify=False with that session: the library sets verify=False on it and cert_reqs=CERT_NONE in
    # the websocket's sslopt; ssl_verify=default: no settings at all.
    session = None
    if way.endswith("http_session=requests"):
        session = requests.Session()
        session.verify = ca
        session.cert = (cert, key) if cert else None
        options["http_session"] = session
        if way.startswith("ssl_verify=false"):
            options["ssl_verify"] = False
    elif way == "websocket_extra_options=sslopt":
        options["websocket_extra_options"] = {"sslopt": {"context": client_context(ca, cert, key)}}
    sio = socketio.Client(reconnection=False, **CLIENT_RECONNECTION, **options)

    def cleanup():  # aborts, so a polling session costs no 30 s here
        sio.reconnection = False  # a drop from here on ends the session
        with contextlib.suppress(Exception):
            if not sio.connected:
                _client_shutdown_sync(sio)  # ends a reconnection in progress, and waits for it
            sio.eio.disconnect(abort=True)
        if session is not None:
            session.close()

    refusals = _client_refusals(sio)
    try:
        sio.connect(server, **connect_args, **_client_wait_timeout(sio, timeout))
        client_check_upgrade(sio, transport)
    except BaseException as exc:
        cleanup()
        raise _client_with_refusal(sio, refusals, exc)
    return ClientSyncConnection(sio, timeout, cleanup, connect_args["namespaces"][0], transport, session)


async def connect_client(variant: str, url: str, ca: str, cert: str | None, key: str | None, headers: list,
                         timeout: float | None, profile: str, auth: dict | None = None) -> Connection:
    """`url`: the server's, the namespace as its path; `auth`: the connect auth payload. Blocking calls,
    fine on the client's own thread."""
    way, transport = variant.rsplit("+", 1)
    server, connect_args = client_connect_args(url, headers, auth, transport)
    return _client_connect_sync(way, transport, server, ca, cert, key, {"request_timeout": timeout}, connect_args,
                                timeout)
