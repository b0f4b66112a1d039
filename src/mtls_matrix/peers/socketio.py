"""python-socketio: AsyncServer on aiohttp, on tornado and as an ASGI app under uvicorn; the sync
Server under werkzeug's threaded WSGI server; AsyncClient and Client. Family `socketio`.

The ws echo protocol, mapped onto Socket.IO events (the server's handlers are below):
- the cell token travels in the Socket.IO `auth` payload ({"cell": token}); the connect handler
  reports the client identity the stack lets the application see, and the transport;
- send -> emit("echo", data) with an acknowledgement; the ack carries the echo, which recv returns
  (acks arrive in the order the server answered, so a burst checks ordering for real);
- close(code, reason) -> call("bye", {code, reason}) (acknowledged) then disconnect(): Socket.IO's
  disconnect carries no code or reason, so the app tells it first; the server reports that code
  and reason only when the library says the client disconnected (else the library's own reason,
  e.g. 'transport close' when the websocket closed before the DISCONNECT packet was flushed);
- server-close -> emit("close", {code, reason}): the server disconnects the client; recv raises
  Closed with the requested code/reason only if the library reports a server-initiated disconnect;
- ping: Engine.IO's heartbeat is internal, no API sends one: UNSUPPORTED.

Transports are client variants (`...+polling`, `...+websocket`, `...+upgrade`): choosing them is
the client's `transports=` argument, like the TLS settings, and a TLS setting can hold on one
transport and not the other. `+upgrade` (the library default: polling, then websocket) that
ends on polling raised NoUpgrade (canonical NO_UPGRADE): the library drops a failed upgrade
silently (engineio logs a warning and carries on polling).

Namespaces: the `io-namespace` scenario puts its namespace in the URL's query (cell.py); the
client then connects to that namespace only, whose handlers are the same as the default's.

Reconnect (the `reconnect-*` scenarios): the harness drops or restarts the cell's private server
(cell.ServerControl) and the client's own reconnection logic must connect again. python-socketio
reads `reconnection` when the connection drops, so the clients are built with short reconnection
delays and `reconnection=False`, and the reconnect step switches it on: in every other cell a
transport error ends the cell as before. The cell's cleanup switches it off again and ends a
reconnection in progress (`shutdown()`, which waits for it), so no reconnect runs after its cell,
where the probe would attribute its connections to whichever cell runs then.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import queue
import socket
import ssl
import threading
import time
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import aiohttp
import engineio
import requests
import socketio
import uvicorn
from aiohttp import web
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets
from tornado.web import Application
from werkzeug.serving import make_server

from mtls_matrix import canonical as verdict  # the vocabulary: verdict.chain below
from mtls_matrix import observe
from mtls_matrix.scenarios import CLIENT_SIDE_GROUPS, DEFAULT_GROUPS
from mtls_matrix.peers import (
    FINAL_CLOSE, TUNED_MAX_MESSAGE, ClientPeer, ClientTLS, Closed, Connection, NoOutcome,
    ServerPeer, TokenRefused, cell_token, parse_close_command, query_token, version_of,
)
from mtls_matrix.scenarios import PHASES, Scenario
from mtls_matrix.timing import HANDLER_STOP_GRACE_S, SERVE_POLL_S

# Each documented way of giving the clients TLS settings (docs: python-socketio "The Socket.IO Clients",
# the Client/AsyncClient reference for http_session, ssl_verify and websocket_extra_options; requests'
# "SSL Cert Verification" for Session.verify/cert): a session that carries them (both transports use it);
# websocket_extra_options (websocket transport only); ssl_verify=False with the client certificate in the
# session (the documented way to skip server verification and still present a certificate: a control);
# and no settings at all, the library's default store pointed at the run's CA through the environment.
TLS_WAYS_ASYNC = ("http_session=connector", "websocket_extra_options=ssl", "ssl_verify=false+http_session=connector",
                  "ssl_verify=default")
TLS_WAYS_SYNC = ("http_session=requests", "websocket_extra_options=sslopt", "ssl_verify=false+http_session=requests",
                 "ssl_verify=default")
# what the environment style sets (ClientPeer.environment): aiohttp's default context reads SSL_CERT_FILE;
# requests reads REQUESTS_CA_BUNDLE (certifi otherwise), websocket-client WEBSOCKET_CLIENT_CA_BUNDLE
DEFAULT_STORE_VARIABLES = {"ssl_verify=default": ("SSL_CERT_FILE",)}
DEFAULT_STORE_VARIABLES_SYNC = {"ssl_verify=default": ("REQUESTS_CA_BUNDLE", "WEBSOCKET_CLIENT_CA_BUNDLE")}
CONTROL_WHY = ("ssl_verify=False turns the verification of the server off on purpose (the client certificate still "
               "rides in the session): its INSECURE on server-rejected is expected; it must still present its "
               "certificate on every transport (mtls-ok)")
# The releases these adapters drive: python-socketio whose connect() takes auth (the cell token rides in
# it). Older 5.x releases lack a few things the adapters replace (a disconnect reason, shutdown(),
# failed_namespaces, transport(sid, namespace), wait_timeout); websocket_extra_options needs
# python-engineio 4.4.0. What they cannot replace makes a cell "cannot run" (ClientPeer.missing_for).
TRANSPORTS = {"polling": ["polling"], "websocket": ["websocket"], "upgrade": None}  # None: the default
# websocket_extra_options reach the websocket transport only: on polling alone they cannot apply
# (+upgrade shows that its polling leg ignores them), so that pair is no variant
WEBSOCKET_ONLY_WAYS = ("websocket_extra_options=ssl", "websocket_extra_options=sslopt")

# The TLS of the socketio family runs through stacks the ws family covers in full (asyncio ssl
# under aiohttp/tornado/uvicorn, aiohttp, requests, websocket-client), so it plays the subset where
# Socket.IO adds information: a success, the rejections whose report engine.io could change, and
# the I/O; `tuned` (max_http_buffer_size) only where a size limit matters. aiohttp plays it all;
# tornado and uvicorn differ from it in identity, origin and close handling, which mtls-ok, a
# rejection and io-close show. Names as in cell ids: `NAME` or `NAME-tuned`.
SCENARIOS_FULL = ("mtls-ok", "mtls-chain", "client-no-cert", "client-untrusted-ca", "client-revoked",
                  "server-untrusted-ca", "server-wrong-host", "io-text", "io-binary", "io-1mib", "io-1mib-tuned",
                  "io-16mib", "io-1000-ordered", "io-ping", "io-close", "io-server-close",
                  # each carrier's success and wrong token; a malformed one tests the shared check (peers.TokenAuth),
                  # which the ws servers cover, and a refusal on polling waits out the long-poll (30 s: HANG)
                  "token-*-ok", "token-*-wrong", "token-missing")
SCENARIOS_SHORT = ("mtls-ok", "client-no-cert", "io-close", "token-header-ok", "token-missing")
# aiohttp also plays the family's own scenarios: a namespace, and the reconnects (its server can
# drop its connections and restart on the same port)
SCENARIOS_OWN = ("io-namespace", "reconnect-*")
# and the scenarios that vary only the client's side (its environment, its files): one server shows them
CLIENT_SIDE = ("environment", "local-config")
NAMESPACES = ("/", "/agents")  # the server's handlers answer in each; scenarios name the namespace to use
# Reconnection: quick attempts, so a reconnect cell takes a second or two, and a bounded number, so
# a client that must refuse the restarted server gives up within its cell; their delays (0.1, 0.2,
# then 0.3 s) span 2.1 s, so a restart slowed by a loaded machine is still met (CI saw 1.2 s miss it)
RECONNECTION = dict(reconnection_delay=0.1, reconnection_delay_max=0.3, randomization_factor=0,
                    reconnection_attempts=8)


def _limits(profile: str) -> dict:
    # max_http_buffer_size (default 1,000,000 bytes: less than 1 MiB) bounds a polling payload and,
    # on aiohttp, a websocket message
    return {"max_http_buffer_size": TUNED_MAX_MESSAGE} if profile == "tuned" else {}


class NoUpgrade(Exception):
    """The client was asked to upgrade to websocket but stayed on polling. The harness's finding, not
    the library's word: its user is told nothing, `shown` is what the library shows (cell.user_error)."""

    def __init__(self, message: str, shown: tuple[str, str]):
        super().__init__(message)
        self.shown = shown


# ---------------------------------------------------------------- servers


class _SioServer(ServerPeer):
    family = "socketio"
    library = "python-socketio"
    companions = ("python-engineio",)
    async_mode = "aiohttp"
    scenarios = SCENARIOS_SHORT
    # a cell connects and echoes in well under 0.5 s; what outlasts that waits on a library timeout
    # of 30 s or none at all (see the notes), so half the run's deadline decides the same HANGs
    deadline_scale = 0.5
    waits = True

    def missing(self):
        return _outside_api_range()

    def _identity(self, environ: dict) -> bytes | None:
        """The client certificate (DER) as this stack shows it to the application; raises when
        it cannot."""
        raise NotImplementedError

    def _app_server(self, profile: str):
        sio = socketio.AsyncServer(async_mode=self.async_mode, **_limits(profile))
        self._tokens: dict[str, dict] = {}
        for namespace in NAMESPACES:
            for event, handler in (("connect", self._on_connect), ("echo", self._on_echo), ("bye", self._on_bye),
                                   ("close", self._on_close), ("disconnect", self._on_disconnect)):
                sio.on(event, functools.partial(handler, namespace=namespace), namespace=namespace)
        self.sio = sio
        return sio

    def _connected(self, sid: str, environ: dict, auth, namespace: str = "/") -> None:
        token = (auth or {}).get("cell") if isinstance(auth, dict) else None
        subject = self._authorize(token, environ, auth)
        self._tokens[sid] = {"token": token}
        try:
            der, error = None if subject else self._identity(environ), None
        except Exception as exc:  # the stack cannot show it: a finding, reported as such
            der, error = None, f"{type(exc).__name__}: {exc}"
        transport = self._transport(sid, namespace)
        self._tokens[sid]["transport"] = transport
        observe.server_event(token, "handler", peer_cn=subject or observe.subject_cn(der), identity_error=error,
                             transport=transport, namespace=namespace)

    def _authorize(self, token: str | None, environ: dict, auth) -> str | None:
        """A token-auth listener: the identity the token names (Authorization header, ?token=, or the
        auth payload's `token`); else refuses the connect with the reason (the documented way:
        ConnectionRefusedError in the connect handler, which the client gets as a connect error)."""
        if self.token_auth is None:
            return None
        try:
            return self.token_auth.identity(token, environ.get("HTTP_AUTHORIZATION"),
                                            query_token(environ.get("QUERY_STRING", "")),
                                            auth.get("token") if isinstance(auth, dict) else None)
        except TokenRefused as refused:
            raise socketio.exceptions.ConnectionRefusedError(refused.reason) from None

    def _echoed(self, sid: str, namespace: str = "/") -> None:
        state = self._tokens.get(sid, {})
        transport = self._transport(sid, namespace)
        if transport != state.get("transport") or "echoed" not in state:  # first echo, or an upgrade since
            state["transport"], state["echoed"] = transport, True
            observe.server_event(state.get("token"), "transport", transport=transport)

    def _transport(self, sid: str, namespace: str) -> str:
        """transport(sid, namespace); older 5.x releases take engine.io's sid alone (their transport(sid)
        looks the Socket.IO sid up in engine.io's table), which the manager maps the Socket.IO sid to."""
        if "namespace" in inspect.signature(self.sio.transport).parameters:
            return self.sio.transport(sid, namespace)
        return self.sio.transport(self.sio.manager.eio_sid_from_sid(sid, namespace))

    def _closed(self, sid: str, reason) -> None:
        state = self._tokens.pop(sid, {})
        bye = state.get("bye")
        reasons = getattr(socketio.AsyncServer, "reason", None)  # 5.12; before it the handler gets no reason
        if bye and (reason is None or reasons is not None and reason == reasons.CLIENT_DISCONNECT):
            code, text = bye
        else:
            code, text = None, str(reason)
        observe.server_event(state.get("token"), "handler-close", code=code, reason=text)

    async def _on_connect(self, sid, environ, auth, namespace="/"):
        self._connected(sid, environ, auth, namespace)

    async def _on_echo(self, sid, data, namespace="/"):
        self._echoed(sid, namespace)
        return data

    def _bye(self, sid, data, namespace="/"):
        self._tokens.get(sid, {})["bye"] = (data.get("code"), data.get("reason"))
        return True  # acknowledged: the client disconnects once the server holds code and reason

    async def _on_bye(self, sid, data, namespace="/"):
        return self._bye(sid, data)

    async def _on_close(self, sid, data, namespace="/"):
        await self.sio.disconnect(sid, namespace)

    async def _on_disconnect(self, sid, reason=None, namespace="/"):
        self._closed(sid, reason)


class AiohttpServer(_SioServer):
    framework = "aiohttp"
    name = "socketio-aiohttp"
    groups = DEFAULT_GROUPS + CLIENT_SIDE_GROUPS
    scenarios = SCENARIOS_FULL + SCENARIOS_OWN + CLIENT_SIDE

    def _identity(self, environ):
        transport = environ["aiohttp.request"].transport
        if transport is None:
            raise RuntimeError("the request's transport is gone (its connection closed)")
        return transport.get_extra_info("ssl_object").getpeercert(binary_form=True)

    async def start(self, context, profile):
        app = web.Application()
        self._app_server(profile).attach(app)
        self._runner = web.AppRunner(app, shutdown_timeout=HANDLER_STOP_GRACE_S)
        await self._runner.setup()
        self._site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=context)
        await self._site.start()
        return self._runner.addresses[0][1]

    async def drop(self):
        # what a crash or a lost connection does: the TCP connections aborted and the engine.io
        # sessions gone, the client not told. Not Socket.IO's disconnect, which ends the client's
        # session for good (no reconnection); and not the TCP abort alone, which a polling session
        # survives (aiohttp's client retries the long-poll on a new connection: the session
        # lives on the server, not in a connection)
        for session in list(self.sio.eio.sockets.values()):  # engine.io's own table: no public API aborts
            await session.close(wait=False, abort=True)
        for handler in self._runner.server.connections:
            if handler.transport is not None:
                handler.transport.abort()

    async def restart(self, context, gap):
        port = self._runner.addresses[0][1]
        await self._site.stop()  # the listener only: engine.io's sessions are not told
        await self.drop()
        await asyncio.sleep(gap)
        self._site = web.TCPSite(self._runner, "127.0.0.1", port, ssl_context=context)
        await self._site.start()

    async def stop(self):
        if hasattr(self.sio, "shutdown"):  # not in older 5.x releases
            await self.sio.shutdown()
        await self._runner.cleanup()


class TornadoServer(_SioServer):
    framework = "tornado"
    name = "socketio-tornado"
    async_mode = "tornado"

    def _identity(self, environ):
        # the documented accessor; on the websocket transport the connect handler runs after the
        # upgrade, where it raises AttributeError (tornadoweb/tornado#2994)
        return environ["tornado.handler"].request.get_ssl_certificate(binary_form=True)

    async def start(self, context, profile):
        settings = {"websocket_max_message_size": TUNED_MAX_MESSAGE} if profile == "tuned" else {}
        app = Application([(r"/socket.io/", socketio.get_tornado_handler(self._app_server(profile)))], **settings)
        self._server = HTTPServer(app, ssl_options=context)
        sockets = bind_sockets(0, "127.0.0.1")
        self._server.add_sockets(sockets)
        return sockets[0].getsockname()[1]

    async def stop(self):
        if hasattr(self.sio, "shutdown"):  # not in older 5.x releases
            await self.sio.shutdown()
        self._server.stop()
        await self._server.close_all_connections()


class UvicornServer(_SioServer):
    """socketio.ASGIApp under uvicorn with uvicorn's own TLS options (files, not a context)."""
    framework = "uvicorn"

    name = "socketio-uvicorn"
    library = "python-socketio"
    async_mode = "asgi"

    def _identity(self, environ):
        # the ASGI TLS extension is where a server would put the client certificate chain
        tls = environ["asgi.scope"].get("extensions", {}).get("tls")
        if tls is None:
            raise LookupError("uvicorn puts no 'tls' extension in the ASGI scope: the app cannot see the client "
                              "certificate")
        chain = tls.get("client_cert_chain") or []
        return ssl.PEM_cert_to_DER_cert(chain[0]) if chain else None

    async def start(self, context, profile):
        files = context.mtls_files  # set by cell.server_context for stacks that take files
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        tls12 = context.maximum_version == ssl.TLSVersion.TLSv1_2
        config = uvicorn.Config(
            socketio.ASGIApp(self._app_server(profile)), log_config=None, log_level="critical", access_log=False,
            lifespan="off", ssl_certfile=str(files.chain), ssl_keyfile=str(files.key),
            ssl_ca_certs=str(files.ca), ssl_cert_reqs=context.verify_mode,  # CERT_NONE on a token-auth listener
            # uvicorn's only version knob is the deprecated protocol constant
            **({"ssl_version": ssl.PROTOCOL_TLSv1_2} if tls12 else {}),
        )
        config.load()
        # no uvicorn option for a TLS 1.3 floor or a CRL: set them on the context uvicorn built
        if context.minimum_version == ssl.TLSVersion.TLSv1_3:
            config.ssl.minimum_version = ssl.TLSVersion.TLSv1_3
        if files.crl:
            config.ssl.load_verify_locations(str(files.crl))
            config.ssl.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF
        self._server = uvicorn.Server(config)
        self._task = asyncio.ensure_future(self._server.serve(sockets=[sock]))  # on the host loop
        while not self._server.started:
            if self._task.done():
                self._task.result()  # raises what stopped it
            await asyncio.sleep(0.01)
        return sock.getsockname()[1]

    async def stop(self):
        if hasattr(self.sio, "shutdown"):  # not in older 5.x releases
            await self.sio.shutdown()
        self._server.should_exit = True
        await asyncio.wait_for(self._task, 5)




class WerkzeugServer(_SioServer):
    """The sync socketio.Server as a WSGI app under werkzeug's threaded server with its
    `ssl_context`: engine.io's 'threading' mode, whose WebSocket is simple-websocket on the
    connection's socket. WSGI has no standard key for the client certificate; werkzeug sets
    `SSL_CLIENT_CERT` (PEM, as nginx and Apache name it) in each request's environ
    (pallets/werkzeug#1469). The connect handler gets the environ of engine.io's handshake request,
    whose connection werkzeug has closed by then on polling (it never keeps one alive): the
    certificate copied into the environ is still there, the socket (`werkzeug.socket`) is not.

    Its serve loop does each TLS handshake itself, in accept(), with no timeout: one connection that
    stops halfway through its handshake holds every later one (tests/test_socketio.py shows it). A
    cell whose client loop the harness closes while a connection is in its handshake (engine.io's
    AsyncClient opening its next long-poll as it disconnects) leaves exactly that, its socket open
    until a gc: so each cell gets a listener of its own, and its verdict is about its own connection,
    never about what the cell before it left on a shared listener."""
    framework = "werkzeug"

    name = "socketio-werkzeug"
    library = "werkzeug"  # the stack that decides what the app sees (python-socketio's version: its clients')
    private_listener = True

    def _identity(self, environ):
        pem = environ.get("SSL_CLIENT_CERT")
        if pem is None:
            raise LookupError("werkzeug put no SSL_CLIENT_CERT in the WSGI environ")
        return ssl.PEM_cert_to_DER_cert(pem)

    def _app_server(self, profile):
        sio = socketio.Server(async_mode="threading", **_limits(profile))
        self._tokens: dict[str, dict] = {}
        for namespace in NAMESPACES:  # the sync server's handlers: the shared logic without await
            sio.on("connect", functools.partial(self._connected, namespace=namespace), namespace=namespace)
            sio.on("echo", functools.partial(self._sync_echo, namespace=namespace), namespace=namespace)
            sio.on("bye", functools.partial(self._bye, namespace=namespace), namespace=namespace)
            sio.on("close", lambda sid, data, ns=namespace: sio.disconnect(sid, ns), namespace=namespace)
            sio.on("disconnect", lambda sid, reason, ns=namespace: self._closed(sid, reason), namespace=namespace)
        self.sio = sio
        return sio

    def _sync_echo(self, sid, data, namespace="/"):
        self._echoed(sid, namespace)
        return data

    async def start(self, context, profile):
        self._server = make_server("127.0.0.1", 0, socketio.WSGIApp(self._app_server(profile)), threaded=True,
                                   ssl_context=context)
        # shutdown() returns once the serve loop polls again: a listener per cell stops in a moment
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": SERVE_POLL_S},
                                        name="server:socketio-werkzeug", daemon=True)
        self._thread.start()
        return self._server.port

    async def stop(self):
        self.sio.shutdown()
        # shutdown() waits for the serve loop, which does each TLS handshake itself (in accept):
        # a connection that never sends its ClientHello holds it, and shutdown() with it. A daemon
        # thread waits instead of the host loop (or an executor thread the interpreter would join at exit).
        stopper = threading.Thread(target=self._server.shutdown, name="stop:socketio-werkzeug", daemon=True)
        stopper.start()
        for _ in range(100):
            if not stopper.is_alive():
                break
            await asyncio.sleep(0.02)
        self._server.server_close()


# ---------------------------------------------------------------- clients


def _split(url: str) -> tuple[str, str, str]:
    """The harness URL (wss://host:port/cell/TOKEN[?token=...&namespace=/NS]) -> the Socket.IO server
    URL, the token and the namespace to connect to. Engine.IO keeps the server URL's query on every
    request: the scenario's `token`, and the cell token, so a proxy's log line names its cell
    (peers/nginx.py)."""
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    namespace = query.pop("namespace", ["/"])[0]
    token = cell_token(parts.path)
    query["cell"] = [token]
    return urlunsplit(("https", parts.netloc, "/", urlencode(query, doseq=True), "")), token, namespace


def _connect_args(tls: ClientTLS, token: str) -> dict:
    """connect()'s auth payload (the cell token, plus what the scenario adds) and headers (sent on every
    Engine.IO request)."""
    return {"auth": {"cell": token, **dict(tls.auth)}, "headers": dict(tls.headers)}


class ConnectRefused(Exception):
    """The server's connect handler refused the connection, with its reason. The library raises only
    'One or more namespaces failed to connect' and hands the reason to a `connect_error` handler
    (python-socketio#344): the adapter registers one (the documented way) and attaches the reason as
    the cause of the library's exception, so the report shows it while the clarity grade stays with
    what connect() told its user."""


def _refusals(sio) -> list:
    refusals: list = []
    sio.on("connect_error", lambda data=None: refusals.append(data))
    return refusals


def _with_refusal(sio, refusals: list, exc: BaseException) -> BaseException:
    """connect()'s exception, with the server's refusal as its cause when the server refused."""
    # a transport failure also reaches connect_error; failed_namespaces (absent in older 5.x) tells them apart
    if getattr(sio, "failed_namespaces", True) and refusals:
        data = refusals[-1]
        reason = data.get("message") if isinstance(data, dict) else data
        exc.__cause__ = ConnectRefused(f"the server refused the connection: {reason}")
    return exc


def _variants(ways: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(f"{way}+{transport}" for way in ways for transport in TRANSPORTS
                 if not (way in WEBSOCKET_ONLY_WAYS and transport == "polling"))


class _Conn(Connection):
    """Echo acks and the disconnect arrive on the client's own loop/threads; recv reads them from
    one queue, so a disconnect wakes a waiting recv.

    disconnect() on the polling transport returns only when the pending long-poll GET ends: the
    server drops the session on the client's CLOSE packet without answering that GET
    (engineio AsyncSocket.receive: close(abort=True)), so the client waits out the GET's own
    timeout, max(ping_interval, ping_timeout) + 5 = 30 s by default. io-close measures that;
    the harness's own cleanup (after a failed connect, a disconnect, or FINAL_CLOSE after other
    scripts) aborts the engine.io session instead (`sio.eio.disconnect(abort=True)`: the CLOSE
    packet is still queued, the client just does not wait for the long-poll)."""

    def __init__(self, sio, timeout: float, cleanup, namespace: str, asked_transport: str, session):
        self.sio, self.timeout, self.cleanup, self.namespace = sio, timeout, cleanup, namespace
        self.asked_transport, self.session = asked_transport, session  # the user's HTTP session, if given
        self.asked: tuple[int, str] | None = None
        self.transport = sio.transport()

    def _disconnected(self, reason) -> Closed:
        # before 5.12 the handler gets no reason: a disconnect the harness asked the server for is that one
        reasons = getattr(socketio.AsyncClient, "reason", None)
        if self.asked and (reason is None or reasons is not None and reason == reasons.SERVER_DISCONNECT):
            return Closed(*self.asked)  # Socket.IO has no close code: the server disconnected us as asked
        # the library tells its user through the documented disconnect handler, with a reason
        return Closed(None, str(reason), shown=(f"socketio.{type(self.sio).__name__} 'disconnect' handler",
                                                f"called with reason {str(reason)!r}"))

    async def ping(self, payload):  # never called: see unsupported
        raise NotImplementedError

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
            _check_upgrade(self.sio, self.asked_transport)
        except NoUpgrade as exc:
            return f"after the reconnect: {exc}"
        if self.asked_transport != "upgrade" and self.sio.transport() != before:
            return f"reconnected on {self.sio.transport()}, was {before}"
        return None


class _AsyncConn(_Conn):
    def __init__(self, *args):
        super().__init__(*args)
        self.inbox: asyncio.Queue = asyncio.Queue()
        self.sio.on("disconnect", self._on_disconnect, namespace=self.namespace)

    def _on_disconnect(self, reason=None):
        if not self.sio.reconnection:  # else the reconnect step is watching: not an end of the connection
            self.inbox.put_nowait(self._disconnected(reason))

    async def send(self, message):
        command = parse_close_command(message)
        if command:
            self.asked = command
            await self.sio.emit("close", {"code": command[0], "reason": command[1]}, namespace=self.namespace)
        else:
            await self.sio.emit("echo", message, namespace=self.namespace, callback=self.inbox.put_nowait)

    async def reconnect(self, disrupt, refuse):
        before, connected = self.sio.transport(), asyncio.Event()
        self.sio.on("connect", connected.set, namespace=self.namespace)
        self.sio.reconnection = True
        try:
            await asyncio.to_thread(disrupt)
            # until it reconnects, or wait() returns: the connection ended and the reconnection gave up
            waits = [asyncio.ensure_future(connected.wait()), asyncio.ensure_future(self.sio.wait())]
            await asyncio.wait(waits, timeout=self.timeout, return_when=asyncio.FIRST_COMPLETED)
            for waiting in waits:
                waiting.cancel()
        finally:
            self.sio.reconnection = False
        return self._outcome(connected.is_set(), waits[1].done() and not waits[1].cancelled(), refuse, before)

    async def recv(self):
        try:
            got = await asyncio.wait_for(self.inbox.get(), self.timeout)
        except asyncio.TimeoutError:
            raise NoOutcome(f"no echo or disconnect within {self.timeout:g}s") from None
        if isinstance(got, Closed):
            await self.cleanup()
            raise got
        return got

    async def close(self, code, reason):
        try:
            if (code, reason) != FINAL_CLOSE:  # see _Conn: the harness's own close is cleanup only
                # call()'s own timeout: on a dropped connection it waits it out (documented), the user too
                await self.sio.call("bye", {"code": code, "reason": reason}, namespace=self.namespace)
                await self.sio.disconnect()
        finally:
            await self.cleanup()


class _SyncConn(_Conn):
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
            if (code, reason) != FINAL_CLOSE:  # see _Conn: the harness's own close is cleanup only
                self.sio.call("bye", {"code": code, "reason": reason}, namespace=self.namespace)  # its own timeout
                self.sio.disconnect()
        finally:
            self.cleanup()


UNSUPPORTED = {"ping": "Socket.IO has no application ping: Engine.IO's heartbeat is internal, no API sends one"}


def _check_upgrade(sio, transport: str) -> None:
    if transport == "upgrade" and sio.transport() != "websocket":
        raise NoUpgrade(f"asked to upgrade to websocket, the session stayed on {sio.transport()} "
                        "(the library drops a failed upgrade silently)",
                        (f"socketio.{type(sio).__name__}.transport()", f"returned {sio.transport()!r}; nothing raised"))


def closed_canonical(exc: Closed) -> str:
    """A disconnect the server did not ask for: the library's reason (Socket.IO has no close code)."""
    return "DISCONNECTED_" + str(exc.reason).upper().replace(" ", "_")


def _canonical(exc) -> str | None:
    if isinstance(exc, NoUpgrade):
        return "NO_UPGRADE"
    if isinstance(exc.__cause__, ConnectRefused):
        return "CONNECT_REFUSED"
    if isinstance(exc, socketio.exceptions.TimeoutError):
        return "TIMEOUT"
    if isinstance(exc, Closed):
        return closed_canonical(exc)
    # engineio replaces a failed websocket handshake by ConnectionError('Connection error'); the
    # status is on the original exception, in the chain
    for e in verdict.chain(exc):
        status = getattr(e, "status_code", None) or (e.status if isinstance(e, aiohttp.WSServerHandshakeError) else None)
        if isinstance(status, int):
            return f"HTTP_{status}"
    return None  # ConnectionError: its message carries the transport's error text, read generically


def _declared(ways: tuple[str, ...], default_store: dict[str, tuple[str, ...]]) -> tuple:
    """A client class's variants and what they declare (ClientPeer): variants, environment,
    server_auth_only (the environment style presents no certificate), controls (ssl_verify=False), only."""
    variants = _variants(ways)
    environment = {v: default_store[_way(v)] for v in variants if _way(v) in default_store}
    controls = {v: CONTROL_WHY for v in variants if _way(v).startswith("ssl_verify=false")}
    # without a client certificate: judged on verifying the server, and on connecting to a good one; a
    # control: where its INSECURE is expected, and where it must still present its certificate
    only = {v: ("server-rejected", "token-header-ok") for v in environment} | {
        v: ("server-rejected", "mtls-ok") for v in controls}
    return variants, environment, tuple(environment), controls, only


class _SioClient(ClientPeer):
    """What both python-socketio clients share: their own timers, and the cells that wait on them."""

    family = "socketio"
    library = "python-socketio"
    companions = ("python-engineio",)
    unsupported = UNSUPPORTED
    clocks = {"long-poll": ("long-poll GET",), "call": ("call() timeout",)}

    def own_timeouts(self, variant):
        # a polling client's pending GET times out after max(ping_interval, ping_timeout) + 5 s (engineio's
        # client), the two from the server's OPEN packet: python-engineio's and Node's defaults are 25 and 20 s
        server = inspect.signature(engineio.AsyncServer).parameters
        return {"long-poll GET": max(server["ping_interval"].default, server["ping_timeout"].default) + 5.0,
                "call() timeout": float(inspect.signature(socketio.AsyncClient.call).parameters["timeout"].default)}

    def waits(self, variant, scenario: Scenario):
        closes = any(op == "close" for op, *_ in scenario.io)
        # a connect the server refuses after the handshake, or a disconnect(): on polling the library sits
        # out its pending long-poll first
        refused = scenario.expect.outcome == "reject" and scenario.expect.by == "server" and \
            PHASES.index(scenario.expect.latest_phase) >= PHASES.index("upgrade")
        polling = variant.endswith("+polling") and (closes or refused)
        return ("call",) * closes + ("long-poll",) * polling  # close: call("bye"), acknowledged

    def missing(self):
        return _outside_api_range()

    def missing_for(self, variant):
        if _way(variant).startswith("websocket_extra_options") and not _has_websocket_extra_options():
            return (f"cannot run: python-engineio {version_of('python-engineio')} has no websocket_extra_options "
                    "(from 4.4.0)")
        return self.missing()

    def canonical(self, exc):
        return _canonical(exc)


def _outside_api_range() -> str | None:
    """What the adapters cannot do without: the cell token rides in connect(auth=...)."""
    if "auth" not in inspect.signature(socketio.Client.connect).parameters:
        return (f"cannot run: python-socketio {version_of('python-socketio')}'s connect() takes no auth, which "
                "carries the cell token to the server's handler")
    return None


def _way(variant: str) -> str:
    return variant.rsplit("+", 1)[0]


def _has_websocket_extra_options() -> bool:
    return "websocket_extra_options" in inspect.signature(engineio.Client.__init__).parameters


class AsyncClient(_SioClient):
    name = "socketio-asyncclient"
    # http_session: an aiohttp session whose connector holds the context (both transports use it);
    # websocket_extra_options: ws_connect(ssl=context) only, polling keeps the library's own session;
    # ssl_verify=False with that session: the library replaces the context by its own unverified one
    # (ssl=False on polling, a bare context on the websocket); ssl_verify=default: no settings at all.
    variants, environment, server_auth_only, controls, only = _declared(TLS_WAYS_ASYNC, DEFAULT_STORE_VARIABLES)

    async def connect(self, variant, url, tls: ClientTLS, profile, timeout):
        way, transport = variant.rsplit("+", 1)
        server, token, namespace = _split(url)
        options = {"request_timeout": timeout}
        session = None
        if way.endswith("http_session=connector"):
            session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=tls.context()))
            options["http_session"] = session
            if way.startswith("ssl_verify=false"):
                options["ssl_verify"] = False
        elif way == "websocket_extra_options=ssl":
            options["websocket_extra_options"] = {"ssl": tls.context()}
        sio = socketio.AsyncClient(reconnection=False, **RECONNECTION, **options)

        async def cleanup():  # see _Conn: aborts, so a polling session costs no 30 s here
            sio.reconnection = False  # a drop from here on ends the session
            with contextlib.suppress(Exception):
                if not sio.connected:
                    await _shutdown_async(sio)  # ends a reconnection in progress, and waits for it
                await sio.eio.disconnect(abort=True)
            if session is not None:  # the user's session: the library never closes it
                await session.close()

        refusals = _refusals(sio)
        try:
            await sio.connect(server, **_connect_args(tls, token), transports=TRANSPORTS[transport],
                              namespaces=[namespace], **_wait_timeout(sio, timeout))
            _check_upgrade(sio, transport)
        except BaseException as exc:
            await cleanup()
            raise _with_refusal(sio, refusals, exc)
        return _AsyncConn(sio, timeout, cleanup, namespace, transport, session)


class Client(_SioClient):
    name = "socketio-client"
    # http_session: a requests.Session with cert=(chain, key) and verify=CA path; engineio copies
    # both into websocket-client's sslopt for the websocket transport.
    # websocket_extra_options: {"sslopt": {"context": ctx}} reaches websocket-client only;
    # polling uses the library's own requests.Session (default trust store, no certificate).
    # ssl_verify=False with that session: the library sets verify=False on it and cert_reqs=CERT_NONE in
    # the websocket's sslopt; ssl_verify=default: no settings at all.
    variants, environment, server_auth_only, controls, only = _declared(TLS_WAYS_SYNC, DEFAULT_STORE_VARIABLES_SYNC)

    async def connect(self, variant, url, tls: ClientTLS, profile, timeout):
        way, transport = variant.rsplit("+", 1)
        server, token, namespace = _split(url)
        options = {"request_timeout": timeout}
        session = None
        if way.endswith("http_session=requests"):
            session = requests.Session()
            session.verify = str(tls.ca)
            session.cert = (str(tls.cert), str(tls.key)) if tls.cert else None
            options["http_session"] = session
            if way.startswith("ssl_verify=false"):
                options["ssl_verify"] = False
        elif way == "websocket_extra_options=sslopt":
            options["websocket_extra_options"] = {"sslopt": {"context": tls.context()}}
        sio = socketio.Client(reconnection=False, **RECONNECTION, **options)

        def cleanup():  # see _Conn: aborts, so a polling session costs no 30 s here
            sio.reconnection = False  # a drop from here on ends the session
            with contextlib.suppress(Exception):
                if not sio.connected:
                    _shutdown_sync(sio)  # ends a reconnection in progress, and waits for it
                sio.eio.disconnect(abort=True)
            if session is not None:
                session.close()

        refusals = _refusals(sio)
        try:
            sio.connect(server, **_connect_args(tls, token), transports=TRANSPORTS[transport], namespaces=[namespace],
                        **_wait_timeout(sio, timeout))
            _check_upgrade(sio, transport)
        except BaseException as exc:
            cleanup()
            raise _with_refusal(sio, refusals, exc)
        return _SyncConn(sio, timeout, cleanup, namespace, transport, session)


def _wait_timeout(sio, timeout: float | None) -> dict:
    """connect(wait_timeout=...); the first 5.x releases wait their own fixed time instead."""
    return {"wait_timeout": timeout} if "wait_timeout" in inspect.signature(sio.connect).parameters else {}


async def _shutdown_async(sio) -> None:
    """shutdown(); older 5.x releases lack it: the same by hand, no more attempts, then disconnect."""
    if hasattr(sio, "shutdown"):
        await sio.shutdown()
    else:
        sio.reconnection = False
        await sio.disconnect()


def _shutdown_sync(sio) -> None:
    if hasattr(sio, "shutdown"):
        sio.shutdown()
    else:
        sio.reconnection = False
        sio.disconnect()


PEERS = [AiohttpServer(), TornadoServer(), UvicornServer(), WerkzeugServer(), AsyncClient(), Client()]
