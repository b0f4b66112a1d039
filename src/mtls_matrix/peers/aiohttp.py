"""aiohttp: web server (WebSocketResponse) and client (ClientSession.ws_connect).

Defaults that matter: max_msg_size is 4 MiB on both sides (a larger message closes with 1009);
the server accepts permessage-deflate when a client offers it, the client does not offer it;
autoping consumes pongs (so ping is unsupported). The tuned profile raises max_msg_size.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import ssl
from string import Template
from urllib.parse import urlsplit, urlunsplit

import aiohttp
from aiohttp import WSMsgType, web

from mtls_matrix import observe
from mtls_matrix.peers import (
    TUNED_MAX_MESSAGE, ClientPeer, ClientTLS, Closed, Connection, ServerPeer, TokenRefused, forwarded_cn,
    parse_close_command,
)
from mtls_matrix.scenarios import CLIENT_SIDE_GROUPS, DEFAULT_GROUPS, TLS_SETTINGS_SCENARIOS
from mtls_matrix.timing import HANDLER_STOP_GRACE_S
from mtls_matrix.canonical import CLOSE_CODES


def _limits(profile: str) -> dict:
    return {"max_msg_size": TUNED_MAX_MESSAGE} if profile == "tuned" else {}


def _limits_src(profile: str, first: bool = False) -> str:
    src = ", ".join(f"{k}={v}" for k, v in _limits(profile).items())
    return src if first or not src else ", " + src


# Reproducer snippets (mtls_matrix.repro, docs/PEERS.md): the same library calls as above, as
# plain source for a standalone script; CA, CLIENT_CERT, Closed, report_handler... are the
# script's own names.
_REPRO_SERVER = Template('''\
from aiohttp import WSMsgType, web


async def handler(request: web.Request) -> web.WebSocketResponse:
    if TOKENS:  # a token-auth server refuses before ws.prepare, i.e. before the upgrade
        try:
            identity = check_token(TOKENS, request.headers.get("Authorization"), request.query.get("token"))
        except TokenRefused as refused:
            report_refused(refused.reason)
            raise web.HTTPUnauthorized(text=refused.reason,
                                       headers={"WWW-Authenticate": refused.www_authenticate}) from None
        report_handler(None, identity=identity)
    else:  # the client certificate, as asyncio exposes it to the application
        report_handler(request.transport.get_extra_info("peercert"))
    ws = web.WebSocketResponse($limits)
    await ws.prepare(request)
    reason = None  # aiohttp exposes a received close reason only on the CLOSE message
    try:
        while True:
            msg = await ws.receive()
            if msg.type is WSMsgType.TEXT:
                command = close_command(msg.data)
                if command:
                    await ws.close(code=command[0], message=command[1].encode())
                    break
                await ws.send_str(msg.data)
            elif msg.type is WSMsgType.BINARY:
                await ws.send_bytes(msg.data)
            else:  # CLOSE (autoclose already replied), CLOSING, CLOSED, ERROR
                if msg.type is WSMsgType.CLOSE:
                    reason = msg.extra
                break
    finally:
        report_close(ws.close_code, reason)
    return ws


async def start_server(context: ssl.SSLContext) -> int:
    global RUNNER
    app = web.Application()
    app.router.add_get("/", handler)
    RUNNER = web.AppRunner(app)
    await RUNNER.setup()
    await web.TCPSite(RUNNER, "127.0.0.1", 0, ssl_context=context).start()
    return RUNNER.addresses[0][1]


async def stop_server() -> None:
    await RUNNER.cleanup()
''')

_REPRO_POOLED = '''\
            # a plain request to the server's other name first: its connection stays in the pool
            other = "127.0.0.1" if url.split("//", 1)[1].startswith("localhost") else "localhost"
            async with session.get("https://" + other + ":" + url.rsplit(":", 1)[1].split("/", 1)[0] + "/",
                                   headers=HEADERS) as response:
                await response.read()
'''

_REPRO_ENV_AT_RUN_TIME = '''\
            os.environ["SSL_CERT_FILE"] = CA  # the program sets it after importing aiohttp
'''

_REPRO_CLIENT = Template('''\
import os

import aiohttp
from aiohttp import WSMsgType

TIMEOUTS = ()  # ClientTimeout raises TimeoutError


class Client:
    # (a variant with no ssl argument, or ssl=True, verifies against the default store: run the script
    # with SSL_CERT_FILE=ca.pem, set before Python starts: aiohttp builds its default contexts at import)
    def __init__(self, session, ws):
        self.session, self.ws = session, ws

    @classmethod
    async def connect(cls, url: str, timeout: float) -> "Client":
        context = ssl.create_default_context(cafile=CA)
        if CLIENT_CERT:
            context.load_cert_chain(CLIENT_CERT, CLIENT_KEY)
        session = aiohttp.ClientSession($session_args)
        try:
$before_ws            return cls(session, await session.ws_connect(url, headers=HEADERS$connect_args))
        except BaseException:
            await session.close()
            raise

    async def send(self, message):
        if isinstance(message, str):
            await self.ws.send_str(message)
        else:
            await self.ws.send_bytes(message)

    async def recv(self):
        msg = await self.ws.receive()  # close and errors come back as messages, not exceptions
        if msg.type in (WSMsgType.TEXT, WSMsgType.BINARY):
            return msg.data
        await self.session.close()
        if msg.type is WSMsgType.ERROR:
            raise msg.data
        if msg.type is WSMsgType.CLOSE:  # data is the code, extra the reason
            raise Closed(msg.data, msg.extra)
        raise Closed(self.ws.close_code, None)

    async def ping(self, payload: bytes) -> bytes:
        raise NotImplementedError("aiohttp's default autoping swallows pongs")

    async def close(self, code: int, reason: str):
        try:
            await self.ws.close(code=code, message=reason.encode())
        finally:
            await self.session.close()
''')


class Server(ServerPeer):
    name = library = "aiohttp"
    # also the scenarios that vary only the client's side: one server of the family shows them
    groups = DEFAULT_GROUPS + CLIENT_SIDE_GROUPS
    clocks = {"handshake": ("asyncio ssl_handshake_timeout",)}

    def own_timeouts(self):
        return {"asyncio ssl_handshake_timeout": asyncio.constants.SSL_HANDSHAKE_TIMEOUT}

    async def start(self, context: ssl.SSLContext, profile: str) -> int:
        self._limits = _limits(profile)
        app = web.Application()
        app.router.add_get("/cell/{token}", self._handler)
        self._runner = web.AppRunner(app, shutdown_timeout=HANDLER_STOP_GRACE_S)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=context).start()
        return self._runner.addresses[0][1]

    async def stop(self) -> None:
        await self._runner.cleanup()

    def repro_server(self, profile: str) -> str:
        return _REPRO_SERVER.substitute(limits=_limits_src(profile, first=True))

    async def _handler(self, request: web.Request) -> web.WebSocketResponse:
        token = request.match_info["token"]
        if self.token_auth:  # a token-auth listener: refused before ws.prepare, i.e. before the upgrade
            try:
                peer_cn = self.token_auth.identity(token, request.headers.get("Authorization"),
                                                   request.query.get("token"))
            except TokenRefused as refused:
                raise web.HTTPUnauthorized(text=refused.reason,
                                           headers={"WWW-Authenticate": refused.www_authenticate}) from None
        elif self.behind_proxy:  # a plain listener only the TLS-terminating proxy reaches (peers/proxy.py)
            peer_cn = forwarded_cn(request.headers)
        else:
            peer_cn = observe.subject_cn(request.transport.get_extra_info("ssl_object").getpeercert(binary_form=True))
        observe.server_event(token, "handler", peer_cn=peer_cn)
        ws = web.WebSocketResponse(**self._limits)
        await ws.prepare(request)
        reason = None  # aiohttp exposes a received close reason only on the CLOSE message
        try:
            while True:
                msg = await ws.receive()
                if msg.type is WSMsgType.TEXT:
                    command = parse_close_command(msg.data)
                    if command:
                        # close_code becomes the code of the client's reply; its reason is dropped
                        await ws.close(code=command[0], message=command[1].encode())
                        break
                    await ws.send_str(msg.data)
                elif msg.type is WSMsgType.BINARY:
                    await ws.send_bytes(msg.data)
                else:  # CLOSE (autoclose already replied), CLOSING, CLOSED, ERROR
                    if msg.type is WSMsgType.CLOSE:
                        reason = msg.extra
                    break
        finally:
            observe.server_event(token, "handler-close", code=ws.close_code, reason=reason)
        return ws


class _Conn(Connection):
    def __init__(self, session: aiohttp.ClientSession, ws: aiohttp.ClientWebSocketResponse):
        self.session, self.ws = session, ws

    async def send(self, message):
        if isinstance(message, str):
            await self.ws.send_str(message)
        else:
            await self.ws.send_bytes(message)

    async def recv(self):
        msg = await self.ws.receive()  # close and errors come back as messages, not exceptions
        if msg.type in (WSMsgType.TEXT, WSMsgType.BINARY):
            return msg.data
        await self.session.close()  # the connection is over: the harness may not call close()
        if msg.type is WSMsgType.ERROR:
            raise msg.data
        # receive() reports the end with a message, not an exception: that message is what its user sees
        shown = (f"{type(msg).__module__}.{type(msg).__qualname__}", f"receive() returned {msg!r}, close_code "
                 f"{self.ws.close_code}")
        if msg.type is WSMsgType.CLOSE:  # data is the code, extra the reason
            raise Closed(msg.data, msg.extra, shown)
        raise Closed(self.ws.close_code, None, shown)  # CLOSING/CLOSED: no close frame to read a reason from

    async def ping(self, payload):  # never called: see Client.unsupported
        raise NotImplementedError

    async def close(self, code, reason):
        try:
            await self.ws.close(code=code, message=reason.encode())
        finally:
            await self.session.close()


class Client(ClientPeer):
    name = library = "aiohttp"
    # Each documented way to give aiohttp its TLS settings (docs: Client Reference, "ssl" of
    # ClientSession.request/ws_connect and TCPConnector; Advanced Client Usage, "SSL control for TCP
    # sockets"): an SSLContext as ws_connect(ssl=...); the deprecated ssl_context= (it warns but still has
    # its own branch of the TLS-parameter merge); the session-wide TCPConnector(ssl=...); ssl=True and no
    # argument at all, which verify against the default store (no client certificate: a user points it at
    # a private CA with SSL_CERT_FILE, the "environment" style); one session whose pooled connections
    # serve a plain HTTPS request to one name of the server, then ws_connect to another name of it; and
    # ssl=True with SSL_CERT_FILE set by the program after importing aiohttp (os.environ, as users point
    # the default store at a private CA at run time), in a client process of its own.
    variants = ("ssl=context", "ssl_context=context", "connector=context", "ssl=True", "ssl=default",
                "session=pooled", "ssl=True+env-at-run-time")
    environment = {"ssl=True": ("SSL_CERT_FILE",), "ssl=default": ("SSL_CERT_FILE",)}
    own_process = ("ssl=True+env-at-run-time",)
    variant_scenarios = {"session=pooled": TLS_SETTINGS_SCENARIOS}
    server_auth_only = ("ssl=True", "ssl=default", "ssl=True+env-at-run-time")
    # without a client certificate: judged on verifying the server, and on connecting to a good one
    only = {variant: ("server-rejected", "token-header-ok") for variant in server_auth_only}
    # With the default autoping=True, receive() consumes PONG frames and no public API reports
    # them; autoping=False would change the library's behaviour for every other step.
    unsupported = {"ping": "aiohttp's default autoping swallows pongs; no public API observes them"}
    # sock_connect covers the TLS handshake; once TLS is done only the session's total bounds the upgrade
    clocks = {"handshake": ("session sock_connect", "session total"), "upgrade": ("session total",),
              "read": ("ws_connect heartbeat",), "close": ("ws_close",)}

    async def connect(self, variant, url, tls: ClientTLS, profile, timeout):
        default_store = variant in self.server_auth_only
        ctx = None if default_store else tls.context()
        if variant == "ssl=True+env-at-run-time":  # in this variant's own client process (own_process)
            os.environ["SSL_CERT_FILE"] = str(tls.ca)
        connector = aiohttp.TCPConnector(ssl=ctx) if variant in ("connector=context", "session=pooled") else None
        # ClientTimeout bounds the opening handshake only (it does not apply after the upgrade)
        timeouts = {"timeout": aiohttp.ClientTimeout(total=timeout)} if timeout else {}
        session = aiohttp.ClientSession(connector=connector, **timeouts)
        headers = {"headers": dict(tls.headers)} if tls.headers else {}
        tls_kw = {"ssl=context": {"ssl": ctx}, "ssl_context=context": {"ssl_context": ctx},
                  "ssl=True": {"ssl": True}, "ssl=True+env-at-run-time": {"ssl": True}}.get(variant, {})
        try:
            if variant == "session=pooled":
                async with session.get(_other_name(url), **headers) as response:
                    await response.read()  # read to the end: the connection goes back to the pool
            return _Conn(session, await session.ws_connect(url, **tls_kw, **headers, **_limits(profile)))
        except BaseException:
            await session.close()  # no leaked session (and connector) when the upgrade fails
            raise

    def own_timeouts(self, variant):
        session = aiohttp.client.DEFAULT_TIMEOUT
        ws = inspect.signature(aiohttp.ClientSession.ws_connect).parameters
        close = getattr(aiohttp.client_ws, "DEFAULT_WS_CLIENT_TIMEOUT", None)  # what an unset timeout= means
        return {"session total": session.total, "session sock_connect": session.sock_connect,
                "ws_connect heartbeat": ws["heartbeat"].default, "ws_close": close and close.ws_close}

    def repro_client(self, variant: str, profile: str) -> str:
        session = "timeout=aiohttp.ClientTimeout(total=timeout)"
        if variant in ("connector=context", "session=pooled"):
            session = "connector=aiohttp.TCPConnector(ssl=context), " + session
        tls = {"ssl=context": ", ssl=context", "ssl_context=context": ", ssl_context=context",
               "ssl=True": ", ssl=True", "ssl=True+env-at-run-time": ", ssl=True"}.get(variant, "")
        before = {"session=pooled": _REPRO_POOLED, "ssl=True+env-at-run-time": _REPRO_ENV_AT_RUN_TIME}.get(variant, "")
        return _REPRO_CLIENT.substitute(session_args=session, connect_args=tls + _limits_src(profile),
                                        before_ws=before)

    def canonical(self, exc):
        if isinstance(exc, aiohttp.WSServerHandshakeError):
            return f"HTTP_{exc.status}"
        if isinstance(exc, aiohttp.ServerDisconnectedError):
            return "EOF"
        if isinstance(exc, aiohttp.WebSocketError):  # raised from an ERROR message, e.g. too big
            return CLOSE_CODES.get(exc.code)
        return None

    def error_attributes(self, exc):
        # ClientConnectorError and its subclasses (ClientSSLError, ClientConnectorCertificateError)
        # document host, port, ssl and os_error / certificate_error; WSServerHandshakeError its status
        names = ("host", "port", "ssl", "os_error", "certificate_error", "status")
        return {name: repr(getattr(exc, name)) for name in names
                if isinstance(exc, aiohttp.ClientError) and _has(exc, name)}


def _has(exc: BaseException, name: str) -> bool:
    try:
        return getattr(exc, name) is not None
    except Exception:  # a property of a half-built exception (no connection key)
        return False


def _other_name(url: str) -> str:
    """The server's other name (localhost <-> 127.0.0.1, both in its certificate) for a plain request."""
    parts = urlsplit(url)
    other = "127.0.0.1" if parts.hostname == "localhost" else "localhost"
    return urlunsplit(("https", f"{other}:{parts.port}", "/", "", ""))


PEERS = [Server(), Client()]
