"""python-socketio: AsyncServer on aiohttp, on tornado and as an ASGI app under uvicorn; the sync
Server under werkzeug's threaded WSGI server; AsyncClient and Client. Family `socketio`. The library
code is in usercode/socketio_*.py (the echo protocol over Socket.IO events: socketio_server.py and
socketio_client.py); this module declares the peers and does the harness's part: the cell token in
the connect `auth` payload ({"cell": token}, which names the connection to the server's hooks), the
canonical errors, the library's clocks, and the `reconnect` steps' hand on the server (drop, restart).

Transports are client variants (`...+polling`, `...+websocket`, `...+upgrade`): choosing them is
the client's `transports=` argument, like the TLS settings, and a TLS setting can hold on one
transport and not the other. `+upgrade` (the library default: polling, then websocket) that
ends on polling raised ClientNoUpgrade (canonical NO_UPGRADE): the library drops a failed upgrade
silently (engineio logs a warning and carries on polling).

Namespaces: the `io-namespace` scenario puts its namespace in the URL's query (cell.py); the
client then connects to that namespace only, whose handlers are the same as the default's.

Reconnect (the `reconnect-*` scenarios): the harness drops or restarts the cell's private server
(cell.ServerControl) and the client's own reconnection logic must connect again; the clients are
built with reconnection off, and the reconnect step switches it on (usercode/socketio_client.py), so
no reconnect runs after its cell, where the probe would attribute its connections to whichever
cell runs then.
"""

from __future__ import annotations

import asyncio
import inspect
from collections import Counter
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import aiohttp
import engineio
import socketio
from aiohttp import web

from mtls_matrix import canonical
from mtls_matrix.canonical import INSECURE_STEP, canonical_from_tls
from mtls_matrix.peers import ClientPeer, ClientTLS, Closed, Connection, ServerPeer, cell_token, version_of
from mtls_matrix.pki import CLIENT_CN
from mtls_matrix.scenarios import BY_NAME, CLIENT_SIDE_GROUPS, DEFAULT_GROUPS, PHASES, Scenario
from mtls_matrix.timing import HANDLER_STOP_GRACE_S, SERVE_POLL_S
from mtls_matrix.usercode import (
    socketio_aiohttp_server, socketio_asyncclient, socketio_client, socketio_tornado_server, socketio_uvicorn_server,
    socketio_werkzeug_server,
)
from mtls_matrix.usercode.socketio_client_common import (
    CLIENT_TRANSPORTS, CLIENT_URL_SCHEME, ClientConnectRefused, ClientNoUpgrade,
)

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


# ---------------------------------------------------------------- servers


class _SioServer(ServerPeer):
    family = "socketio"
    library = "python-socketio"
    companions = ("python-engineio",)
    scenarios = SCENARIOS_SHORT
    # a cell connects and echoes in well under 0.5 s; what outlasts that waits on a library timeout
    # of 30 s or none at all (see the notes), so half the run's deadline decides the same HANGs
    deadline_scale = 0.5
    waits = True

    def missing(self):
        return _outside_api_range()


class AiohttpServer(_SioServer):
    framework = "aiohttp"
    name = "socketio-aiohttp"
    usercode = socketio_aiohttp_server
    groups = DEFAULT_GROUPS + CLIENT_SIDE_GROUPS
    scenarios = SCENARIOS_FULL + SCENARIOS_OWN + CLIENT_SIDE

    async def start(self, context, profile):
        # the harness stops a listener without waiting out aiohttp's 60 s for open requests
        self._server, port = await self.usercode.start_server(context, self.hooks, profile,
                                                              shutdown_timeout=HANDLER_STOP_GRACE_S)
        return port

    async def drop(self):
        # what a crash or a lost connection does: the TCP connections aborted and the engine.io
        # sessions gone, the client not told. Not Socket.IO's disconnect, which ends the client's
        # session for good (no reconnection); and not the TCP abort alone, which a polling session
        # survives (aiohttp's client retries the long-poll on a new connection: the session
        # lives on the server, not in a connection)
        for session in list(self._server.sio.eio.sockets.values()):  # engine.io's own table: no public API aborts
            await session.close(wait=False, abort=True)
        for handler in self._server.runner.server.connections:
            if handler.transport is not None:
                handler.transport.abort()

    async def restart(self, context, gap):
        server = self._server
        port = server.runner.addresses[0][1]
        await server.site.stop()  # the listener only: engine.io's sessions are not told
        await self.drop()
        await asyncio.sleep(gap)
        server.site = web.TCPSite(server.runner, "127.0.0.1", port, ssl_context=context)
        await server.site.start()


class TornadoServer(_SioServer):
    framework = "tornado"
    name = "socketio-tornado"
    usercode = socketio_tornado_server


class UvicornServer(_SioServer):
    """socketio.ASGIApp under uvicorn with uvicorn's own TLS options (files, not a context)."""

    framework = "uvicorn"
    name = "socketio-uvicorn"
    usercode = socketio_uvicorn_server

    async def start(self, context, profile):
        files = context.mtls_files  # set by cell.server_context for stacks that take files
        self._server, port = await self.usercode.start_server(
            context, self.hooks, profile, certfile=str(files.chain), keyfile=str(files.key), ca_certs=str(files.ca),
            crlfile=str(files.crl) if files.crl else None)
        return port


class WerkzeugServer(_SioServer):
    """The sync socketio.Server as a WSGI app under werkzeug's threaded server (usercode).

    Its serve loop does each TLS handshake itself, in accept(), with no timeout: one connection that
    stops halfway through its handshake holds every later one (tests/test_socketio.py shows it). A
    cell whose client loop the harness closes while a connection is in its handshake (engine.io's
    AsyncClient opening its next long-poll as it disconnects) leaves exactly that, its socket open
    until a gc: so each cell gets a listener of its own, and its verdict is about its own connection,
    never about what the cell before it left on a shared listener."""

    framework = "werkzeug"
    name = "socketio-werkzeug"
    library = "werkzeug"  # the stack that decides what the app sees (python-socketio's version: its clients')
    usercode = socketio_werkzeug_server
    private_listener = True

    async def start(self, context, profile):
        # a listener per cell stops in a moment: shutdown() returns once the serve loop polls again
        self._server, port = await self.usercode.start_server(context, self.hooks, profile,
                                                              poll_interval=SERVE_POLL_S)
        return port


# ---------------------------------------------------------------- clients


def _target(url: str, tls: ClientTLS) -> tuple[str, dict]:
    """The harness URL (wss://host:port/cell/TOKEN[?token=...&namespace=/NS]) -> the Socket.IO URL the library
    code takes (https://host:port/NS?...: the namespace as its path) and the connect auth payload: the cell
    token, which names the connection to the server (the echo protocol), plus what the scenario adds.
    Engine.IO keeps the URL's query on every request: the scenario's `token`, and the cell token, so a
    proxy's log line names its cell (peers/nginx.py)."""
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    namespace = query.pop("namespace", ["/"])[0]
    token = cell_token(parts.path)
    query["cell"] = [token]
    return (urlunsplit((CLIENT_URL_SCHEME, parts.netloc, namespace, urlencode(query, doseq=True), "")),
            {"cell": token, **dict(tls.auth)})


def _variants(ways: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(f"{way}+{transport}" for way in ways for transport in CLIENT_TRANSPORTS
                 if not (way in WEBSOCKET_ONLY_WAYS and transport == "polling"))


UNSUPPORTED = {"ping": "Socket.IO has no application ping: Engine.IO's heartbeat is internal, no API sends one"}


def closed_canonical(exc: Closed) -> str:
    """A disconnect the server did not ask for: the library's reason (Socket.IO has no close code)."""
    return "DISCONNECTED_" + str(exc.reason).upper().replace(" ", "_")


def _canonical(exc) -> str | None:
    if isinstance(exc, ClientNoUpgrade):
        return "NO_UPGRADE"
    if isinstance(exc.__cause__, ClientConnectRefused):
        return "CONNECT_REFUSED"
    if isinstance(exc, socketio.exceptions.TimeoutError):
        return "TIMEOUT"
    if isinstance(exc, Closed):
        return closed_canonical(exc)
    # engineio replaces a failed websocket handshake by ConnectionError('Connection error'); the
    # status is on the original exception, in the chain
    for e in canonical.chain(exc):
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


async def reconnect_step(conn: Connection, control, how: str, server_cert: str | None = None) -> str | None:
    """The `reconnect` step (ClientPeer.reconnect_step; `control`: cell.ServerControl). The server drops
    the connection or restarts (coming back with `server_cert`, if given); the client's own reconnection
    must connect again, presenting its certificate (the server's handler sees the client identity once
    more) after a new handshake; or, facing a server certificate it must not trust, refuse it for the
    reason that certificate's own scenario names, and not connect."""
    if control is None:
        raise RuntimeError("a reconnect step needs the cell's private server (Scenario.private_server)")
    events = control.recorder.events
    seen = len(events)
    problem = await conn.reconnect(lambda: control.disrupt(how, server_cert), refuse=server_cert is not None)
    new = events[seen:]
    identities = [e.data.get("peer_cn") for e in new if e.side == "server" and e.kind == "handler"]
    handshakes = [e for e in new if e.side == "client" and e.kind in ("handshake-ok", "handshake-error")]
    if server_cert is not None:
        expected = BY_NAME[server_cert].expect.reason
        if problem or identities:
            return f"{INSECURE_STEP}after the {how} with {server_cert}, the client reconnected (the handler saw " \
                   f"{identities}) although it must refuse that certificate with {expected}"
        refused = [canonical_from_tls(e.data) for e in handshakes if e.kind == "handshake-error"]
        if expected not in refused:
            return f"the client did not reconnect, but did not refuse the certificate with {expected} either " \
                   f"(its handshakes after the {how}: {refused or 'none'})"
        return None
    if problem:
        refused = Counter(f"{e.side} {canonical_from_tls(e.data)}" for e in new if e.kind == "handshake-error")
        seen = ", ".join(f"{what} ×{n}" for what, n in refused.items())
        return problem + (f" (handshake errors after the {how}: {seen})" if refused else "")
    if identities != [CLIENT_CN]:
        return f"after the {how} the server's handler saw client identities {identities}, expected {CLIENT_CN!r} once"
    # the server's record of the new handshake: it is written before its handler runs, so before the
    # client hears it connected (the client's own record can come a moment after that)
    if not any(e.side == "server" and e.kind == "handshake-ok" for e in new):
        return f"the client reconnected after the {how} without a new TLS handshake"
    return None


class _SioClient(ClientPeer):
    """What both python-socketio clients share: their own timers, the cells that wait on them, and the
    harness's side of a connection: the cell token in the auth payload (usercode: the library code)."""

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

    async def reconnect_step(self, conn, control, how, server_cert=None):
        return await reconnect_step(conn, control, how, server_cert)


# The releases these adapters drive: python-socketio whose connect() takes auth (the cell token rides in
# it). Older 5.x releases lack a few things the library code replaces (a disconnect reason, shutdown(),
# failed_namespaces, transport(sid, namespace), wait_timeout); websocket_extra_options needs
# python-engineio 4.4.0. What they cannot replace makes a cell "cannot run" (ClientPeer.missing_for).
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
    usercode = socketio_asyncclient
    # http_session: an aiohttp session whose connector holds the context (both transports use it);
    # websocket_extra_options: ws_connect(ssl=context) only; ssl_verify=False with that session; no settings at all
    variants, environment, server_auth_only, controls, only = _declared(TLS_WAYS_ASYNC, DEFAULT_STORE_VARIABLES)

    async def connect(self, variant, url, tls: ClientTLS, profile, timeout):
        target, auth = _target(url, tls)
        return await self.usercode.connect_client(variant, target, str(tls.ca), tls.cert and str(tls.cert),
                                                  tls.key and str(tls.key), list(tls.headers), timeout, profile,
                                                  auth=auth)


class Client(_SioClient):
    name = "socketio-client"
    usercode = socketio_client
    # http_session: a requests.Session with cert and verify (engineio copies both into websocket-client's
    # sslopt); websocket_extra_options: sslopt with a context; ssl_verify=False with that session; no settings
    variants, environment, server_auth_only, controls, only = _declared(TLS_WAYS_SYNC, DEFAULT_STORE_VARIABLES_SYNC)

    async def connect(self, variant, url, tls: ClientTLS, profile, timeout):
        target, auth = _target(url, tls)
        return await self.usercode.connect_client(variant, target, str(tls.ca), tls.cert and str(tls.cert),
                                                  tls.key and str(tls.key), list(tls.headers), timeout, profile,
                                                  auth=auth)


PEERS = [AiohttpServer(), TornadoServer(), UvicornServer(), WerkzeugServer(), AsyncClient(), Client()]
