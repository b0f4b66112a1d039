"""python-socketio: AsyncServer on aiohttp, on tornado and as an ASGI app under uvicorn;
AsyncClient and Client. Family `socketio`. (The sync Server under a threaded WSGI server is not
built yet.)

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

Reconnection is off: a client reconnecting in the background after its cell would open TLS
connections that the probe attributes to whichever cell runs then.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import socket
import ssl
from urllib.parse import urlsplit

import aiohttp
import requests
import socketio
import uvicorn
from aiohttp import web
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets
from tornado.web import Application

from mtls_matrix import observe, verdict
from mtls_matrix.peers import (
    FINAL_CLOSE, TUNED_MAX_MESSAGE, ClientPeer, ClientTLS, Closed, Connection, ServerPeer, cell_token,
    parse_close_command,
)

TLS_WAYS_ASYNC = ("http_session=connector", "websocket_extra_options=ssl")
TLS_WAYS_SYNC = ("http_session=requests", "websocket_extra_options=sslopt")
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
                  "io-16mib", "io-1000-ordered", "io-ping", "io-close", "io-server-close")
SCENARIOS_SHORT = ("mtls-ok", "client-no-cert", "io-close")


def _limits(profile: str) -> dict:
    # max_http_buffer_size (default 1,000,000 bytes: less than 1 MiB) bounds a polling payload and,
    # on aiohttp, a websocket message
    return {"max_http_buffer_size": TUNED_MAX_MESSAGE} if profile == "tuned" else {}


class NoUpgrade(Exception):
    """The client was asked to upgrade to websocket but stayed on polling."""


# ---------------------------------------------------------------- servers


class _SioServer(ServerPeer):
    family = "socketio"
    library = "python-socketio"
    async_mode = "aiohttp"
    scenarios = SCENARIOS_SHORT
    # a cell connects and echoes in well under 0.5 s; what outlasts that waits on a library timeout
    # of 30 s or none at all (see the notes), so half the run's deadline decides the same HANGs
    deadline_scale = 0.5

    def _identity(self, environ: dict) -> bytes | None:
        """The client certificate (DER) as this stack shows it to the application; raises when
        it cannot."""
        raise NotImplementedError

    def _app_server(self, profile: str):
        sio = socketio.AsyncServer(async_mode=self.async_mode, **_limits(profile))
        self._tokens: dict[str, dict] = {}
        sio.on("connect", self._on_connect)
        sio.on("echo", self._on_echo)
        sio.on("bye", self._on_bye)
        sio.on("close", self._on_close)
        sio.on("disconnect", self._on_disconnect)
        self.sio = sio
        return sio

    def _connected(self, sid: str, environ: dict, auth) -> None:
        token = (auth or {}).get("cell") if isinstance(auth, dict) else None
        self._tokens[sid] = {"token": token}
        try:
            der, error = self._identity(environ), None
        except Exception as exc:  # the stack cannot show it: a finding, reported as such
            der, error = None, f"{type(exc).__name__}: {exc}"
        transport = self.sio.transport(sid)
        self._tokens[sid]["transport"] = transport
        observe.server_event(token, "handler", peer_cn=observe.subject_cn(der), identity_error=error,
                             transport=transport)

    def _echoed(self, sid: str) -> None:
        state = self._tokens.get(sid, {})
        transport = self.sio.transport(sid)
        if transport != state.get("transport") or "echoed" not in state:  # first echo, or an upgrade since
            state["transport"], state["echoed"] = transport, True
            observe.server_event(state.get("token"), "transport", transport=transport)

    def _closed(self, sid: str, reason) -> None:
        state = self._tokens.pop(sid, {})
        bye = state.get("bye")
        if bye and reason == socketio.AsyncServer.reason.CLIENT_DISCONNECT:
            code, text = bye
        else:
            code, text = None, str(reason)
        observe.server_event(state.get("token"), "handler-close", code=code, reason=text)

    async def _on_connect(self, sid, environ, auth):
        self._connected(sid, environ, auth)

    async def _on_echo(self, sid, data):
        self._echoed(sid)
        return data

    async def _on_bye(self, sid, data):
        self._tokens.get(sid, {})["bye"] = (data.get("code"), data.get("reason"))
        return True  # acknowledged: the client disconnects once the server holds code and reason

    async def _on_close(self, sid, data):
        await self.sio.disconnect(sid)

    async def _on_disconnect(self, sid, reason):
        self._closed(sid, reason)


class AiohttpServer(_SioServer):
    name = "socketio-aiohttp"
    scenarios = SCENARIOS_FULL

    def _identity(self, environ):
        transport = environ["aiohttp.request"].transport
        if transport is None:
            raise RuntimeError("the request's transport is gone (its connection closed)")
        return transport.get_extra_info("ssl_object").getpeercert(binary_form=True)

    async def start(self, context, profile):
        app = web.Application()
        self._app_server(profile).attach(app)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=context).start()
        return self._runner.addresses[0][1]

    async def stop(self):
        await self.sio.shutdown()
        await self._runner.cleanup()


class TornadoServer(_SioServer):
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
        await self.sio.shutdown()
        self._server.stop()
        await self._server.close_all_connections()


class UvicornServer(_SioServer):
    """socketio.ASGIApp under uvicorn with uvicorn's own TLS options (files, not a context)."""

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
            ssl_ca_certs=str(files.ca), ssl_cert_reqs=ssl.CERT_REQUIRED,
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
        await self.sio.shutdown()
        self._server.should_exit = True
        await asyncio.wait_for(self._task, 5)


# ---------------------------------------------------------------- clients


def _split(url: str) -> tuple[str, str]:
    """The harness URL (wss://host:port/cell/TOKEN) -> the Socket.IO server URL and the token."""
    parts = urlsplit(url)
    return f"https://{parts.netloc}", cell_token(parts.path)


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

    def __init__(self, sio, timeout: float, cleanup=None):
        self.sio, self.timeout, self.cleanup = sio, timeout, cleanup
        self.asked: tuple[int, str] | None = None
        self.transport = sio.transport()

    def _disconnected(self, reason) -> Closed:
        if self.asked and reason == socketio.AsyncClient.reason.SERVER_DISCONNECT:
            return Closed(*self.asked)  # Socket.IO has no close code: the server disconnected us as asked
        return Closed(None, str(reason))

    async def ping(self, payload):  # never called: see unsupported
        raise NotImplementedError


class _AsyncConn(_Conn):
    def __init__(self, sio, timeout, cleanup):
        super().__init__(sio, timeout, cleanup)
        self.inbox: asyncio.Queue = asyncio.Queue()
        sio.on("disconnect", lambda reason: self.inbox.put_nowait(self._disconnected(reason)))

    async def send(self, message):
        command = parse_close_command(message)
        if command:
            self.asked = command
            await self.sio.emit("close", {"code": command[0], "reason": command[1]})
        else:
            await self.sio.emit("echo", message, callback=self.inbox.put_nowait)

    async def recv(self):
        got = await asyncio.wait_for(self.inbox.get(), self.timeout)
        if isinstance(got, Closed):
            await self.cleanup()
            raise got
        return got

    async def close(self, code, reason):
        try:
            if (code, reason) != FINAL_CLOSE:  # see _Conn: the harness's own close is cleanup only
                await self.sio.call("bye", {"code": code, "reason": reason}, timeout=self.timeout)
                await self.sio.disconnect()
        finally:
            await self.cleanup()


class _SyncConn(_Conn):
    def __init__(self, sio, timeout, cleanup):
        super().__init__(sio, timeout, cleanup)
        self.inbox: queue.Queue = queue.Queue()
        sio.on("disconnect", lambda reason: self.inbox.put(self._disconnected(reason)))

    async def send(self, message):
        command = parse_close_command(message)
        if command:
            self.asked = command
            self.sio.emit("close", {"code": command[0], "reason": command[1]})
        else:
            self.sio.emit("echo", message, callback=self.inbox.put)

    async def recv(self):
        try:
            got = self.inbox.get(timeout=self.timeout)
        except queue.Empty:
            raise TimeoutError(f"no echo or disconnect within {self.timeout:g}s") from None
        if isinstance(got, Closed):
            self.cleanup()
            raise got
        return got

    async def close(self, code, reason):
        try:
            if (code, reason) != FINAL_CLOSE:  # see _Conn: the harness's own close is cleanup only
                self.sio.call("bye", {"code": code, "reason": reason}, timeout=self.timeout)
                self.sio.disconnect()
        finally:
            self.cleanup()


UNSUPPORTED = {"ping": "Socket.IO has no application ping: Engine.IO's heartbeat is internal, no API sends one"}


def _check_upgrade(sio, transport: str) -> None:
    if transport == "upgrade" and sio.transport() != "websocket":
        raise NoUpgrade(f"asked to upgrade to websocket, the session stayed on {sio.transport()} "
                        "(the library drops a failed upgrade silently)")


def closed_canonical(exc: Closed) -> str:
    """A disconnect the server did not ask for: the library's reason (Socket.IO has no close code)."""
    return "DISCONNECTED_" + str(exc.reason).upper().replace(" ", "_")


def _canonical(exc) -> str | None:
    if isinstance(exc, NoUpgrade):
        return "NO_UPGRADE"
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


class AsyncClient(ClientPeer):
    name = "socketio-asyncclient"
    family = "socketio"
    library = "python-socketio"
    # http_session: an aiohttp session whose connector holds the context (both transports use it);
    # websocket_extra_options: ws_connect(ssl=context) only, polling keeps the library's own session.
    # ssl_verify takes only True (default trust store, no client certificate) or False (no
    # verification): neither can carry a private CA or a client certificate, so no variant.
    variants = _variants(TLS_WAYS_ASYNC)
    unsupported = UNSUPPORTED

    async def connect(self, variant, url, tls: ClientTLS, profile, timeout):
        way, transport = variant.split("+")
        server, token = _split(url)
        ctx = tls.context()
        session = None
        if way == "http_session=connector":
            session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx))
            sio = socketio.AsyncClient(reconnection=False, http_session=session, request_timeout=timeout)
        else:
            sio = socketio.AsyncClient(reconnection=False, websocket_extra_options={"ssl": ctx},
                                       request_timeout=timeout)

        async def cleanup():  # see _Conn: aborts, so a polling session costs no 30 s here
            with contextlib.suppress(Exception):
                await sio.eio.disconnect(abort=True)
            if session is not None:  # the user's session: the library never closes it
                await session.close()

        try:
            await sio.connect(server, auth={"cell": token}, transports=TRANSPORTS[transport], wait_timeout=timeout)
            _check_upgrade(sio, transport)
        except BaseException:
            await cleanup()
            raise
        return _AsyncConn(sio, timeout, cleanup)

    def canonical(self, exc):
        return _canonical(exc)


class Client(ClientPeer):
    name = "socketio-client"
    family = "socketio"
    library = "python-socketio"
    # http_session: a requests.Session with cert=(chain, key) and verify=CA path; engineio copies
    # both into websocket-client's sslopt for the websocket transport.
    # websocket_extra_options: {"sslopt": {"context": ctx}} reaches websocket-client only;
    # polling uses the library's own requests.Session (default trust store, no certificate).
    variants = _variants(TLS_WAYS_SYNC)
    unsupported = UNSUPPORTED

    async def connect(self, variant, url, tls: ClientTLS, profile, timeout):
        way, transport = variant.split("+")
        server, token = _split(url)
        session = None
        if way == "http_session=requests":
            session = requests.Session()
            session.verify = str(tls.ca)
            session.cert = (str(tls.cert), str(tls.key)) if tls.cert else None
            sio = socketio.Client(reconnection=False, http_session=session, request_timeout=timeout)
        else:
            sio = socketio.Client(reconnection=False, websocket_extra_options={"sslopt": {"context": tls.context()}},
                                  request_timeout=timeout)

        def cleanup():  # see _Conn: aborts, so a polling session costs no 30 s here
            with contextlib.suppress(Exception):
                sio.eio.disconnect(abort=True)
            if session is not None:
                session.close()

        try:
            sio.connect(server, auth={"cell": token}, transports=TRANSPORTS[transport], wait_timeout=timeout)
            _check_upgrade(sio, transport)
        except BaseException:
            cleanup()
            raise
        return _SyncConn(sio, timeout, cleanup)

    def canonical(self, exc):
        return _canonical(exc)


PEERS = [AiohttpServer(), TornadoServer(), UvicornServer(), AsyncClient(), Client()]
