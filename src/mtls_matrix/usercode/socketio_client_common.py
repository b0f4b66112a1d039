"""What python-socketio's AsyncClient (usercode/socketio_asyncclient.py) and its sync Client
(usercode/socketio_client.py) share: the connection over the echo protocol, the upgrade check, the
server's refusal. See socketio_client.py for the protocol and the variants."""

from __future__ import annotations

import inspect
import ssl
from urllib.parse import urlsplit, urlunsplit

import socketio

from mtls_matrix.protocol import Closed, Connection

TIMEOUTS = (socketio.exceptions.TimeoutError,)  # call()'s own timeout
CLIENT_URL_SCHEME = "https"  # the server's URL, as connect() takes it; the namespace is its path

CLIENT_TRANSPORTS = {"polling": ["polling"], "websocket": ["websocket"], "upgrade": None}  # None: the default
# Reconnection: quick attempts, so a reconnect takes a second or two, and a bounded number, so a client
# that must refuse the restarted server gives up soon; their delays (0.1, 0.2, then 0.3 s) span 2.1 s,
# so a restart slowed by a loaded machine is still met
CLIENT_RECONNECTION = dict(reconnection_delay=0.1, reconnection_delay_max=0.3, randomization_factor=0,
                           reconnection_attempts=8)


class ClientNoUpgrade(Exception):
    """Asked to upgrade to websocket, the session stayed on polling: the library drops a failed upgrade
    silently (engineio logs a warning and carries on polling), so its user checks transport().
    `shown`: what the library shows (protocol.Closed's convention)."""

    def __init__(self, message: str, shown: tuple[str, str]):
        super().__init__(message)
        self.shown = shown


class ClientConnectRefused(Exception):
    """The server's connect handler refused the connection, with its reason. The library raises only
    'One or more namespaces failed to connect' and hands the reason to a `connect_error` handler
    (python-socketio#344): connect_client registers one (the documented way) and attaches the reason as
    the cause of the library's exception."""


def client_check_upgrade(sio, transport: str) -> None:
    if transport == "upgrade" and sio.transport() != "websocket":
        raise ClientNoUpgrade(f"asked to upgrade to websocket, the session stayed on {sio.transport()} "
                              "(the library drops a failed upgrade silently)",
                              (f"socketio.{type(sio).__name__}.transport()",
                               f"returned {sio.transport()!r}; nothing raised"))


def _client_refusals(sio) -> list:
    refusals: list = []
    sio.on("connect_error", lambda data=None: refusals.append(data))
    return refusals


def _client_with_refusal(sio, refusals: list, exc: BaseException) -> BaseException:
    """connect()'s exception, with the server's refusal as its cause when the server refused."""
    # a transport failure also reaches connect_error; failed_namespaces (absent in older 5.x) tells them apart
    if getattr(sio, "failed_namespaces", True) and refusals:
        data = refusals[-1]
        reason = data.get("message") if isinstance(data, dict) else data
        exc.__cause__ = ClientConnectRefused(f"the server refused the connection: {reason}")
    return exc


def _client_wait_timeout(sio, timeout: float | None) -> dict:
    """connect(wait_timeout=...); the first 5.x releases wait their own fixed time instead."""
    return {"wait_timeout": timeout} if "wait_timeout" in inspect.signature(sio.connect).parameters else {}


class ClientConnection(Connection):
    """Echo acks and the disconnect arrive on the client's own loop/threads; recv reads them from
    one queue, so a disconnect wakes a waiting recv."""

    def __init__(self, sio, timeout: float, cleanup, namespace: str, asked_transport: str, session):
        self.sio, self.timeout, self.cleanup, self.namespace = sio, timeout, cleanup, namespace
        self.asked_transport, self.session = asked_transport, session  # the user's HTTP session, if given
        self.asked: tuple[int, str] | None = None
        self.transport = sio.transport()

    def _disconnected(self, reason) -> Closed:
        # before 5.12 the handler gets no reason: a disconnect the app asked the server for is that one
        reasons = getattr(socketio.AsyncClient, "reason", None)
        if self.asked and (reason is None or reasons is not None and reason == reasons.SERVER_DISCONNECT):
            return Closed(*self.asked)  # Socket.IO has no close code: the server disconnected us as asked
        # the library tells its user through the documented disconnect handler, with a reason
        return Closed(None, str(reason), shown=(f"socketio.{type(self.sio).__name__} 'disconnect' handler",
                                                f"called with reason {str(reason)!r}"))

    async def ping(self, payload):
        raise NotImplementedError("Socket.IO has no application ping: Engine.IO's heartbeat is internal")

    def _outcome(self, reconnected: bool, gave_up: bool, refuse: bool, before: str) -> str | None:
        if refuse:
            return "reconnected" if reconnected else None
        if not reconnected:
            attempts = self.sio.reconnection_attempts
            return (f"the reconnection gave up after {attempts} attempts" if gave_up
                    else f"no reconnect within {self.timeout:g}s")
        return self._after_reconnect(before)

    def _after_reconnect(self, before) -> str | None:
        """What the reconnect must have kept: the user's HTTP session (same object, open), the transport."""
        closed = getattr(self.session, "closed", False)  # aiohttp's; a requests.Session has no such flag
        if self.session is not None and (self.sio.eio.http is not self.session or closed):
            return (f"the user's HTTP session was {'closed' if closed else 'replaced'} by the reconnect "
                    f"(now {self.sio.eio.http!r})")
        try:
            client_check_upgrade(self.sio, self.asked_transport)
        except ClientNoUpgrade as exc:
            return f"after the reconnect: {exc}"
        if self.asked_transport != "upgrade" and self.sio.transport() != before:
            return f"reconnected on {self.sio.transport()}, was {before}"
        return None


def client_target(url: str) -> tuple[str, str]:
    """The server URL connect() takes (its query kept) and the namespace: the URL's path."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/", parts.query, "")), parts.path.rstrip("/") or "/"


def client_context(ca: str, cert: str | None, key: str | None) -> ssl.SSLContext:
    """The documented stdlib way: a default client context plus the CA and the certificate."""
    context = ssl.create_default_context(cafile=ca)
    if cert:
        context.load_cert_chain(cert, key)
    return context





def client_connect_args(url: str, headers: list, auth: dict | None, transport: str) -> tuple[str, dict]:
    """The server URL and connect()'s arguments: the auth payload, the headers (sent with every Engine.IO
    request), the transports and the namespace."""
    server, namespace = client_target(url)
    return server, {"auth": auth or {}, "headers": dict(headers), "transports": CLIENT_TRANSPORTS[transport],
                    "namespaces": [namespace]}
