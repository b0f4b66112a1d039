"""tornado: WebSocketHandler behind HTTPServer, and websocket_connect.

Defaults that matter: max message size is 10 MiB on both sides (a larger message closes with
1009), no compression unless asked. The tuned profile raises both limits.

websocket_connect takes TLS settings only through an HTTPRequest, in three documented ways, each
a variant: ssl_options as an SSLContext, ssl_options as a dict (turned into a context by
netutil.ssl_options_to_context, which starts from a bare ssl.SSLContext(PROTOCOL_TLS_CLIENT),
not from create_default_context), or the request's own ca_certs/client_cert/client_key (turned
into create_default_context(cafile=ca_certs) by simple_httpclient._get_ssl_options); and the dict
with cert_reqs=ssl.CERT_REQUIRED spelled out, as tornado.netutil.ssl_options_to_context documents its
keys (docs: tornado.httpclient.HTTPRequest ssl_options, tornado.netutil.ssl_wrap_socket).
"""

from __future__ import annotations

import inspect
import asyncio
import ssl
from string import Template

from tornado.httpclient import HTTPClientError, HTTPRequest
from tornado.httpserver import HTTPServer
from tornado.iostream import StreamClosedError
from tornado.netutil import bind_sockets
from tornado.simple_httpclient import HTTPStreamClosedError, HTTPTimeoutError
from tornado.web import Application
from tornado.websocket import WebSocketClosedError, WebSocketHandler, websocket_connect

from mtls_matrix import observe
from mtls_matrix.scenarios import TLS_SETTINGS_SCENARIOS
from mtls_matrix.peers import (
    TUNED_MAX_MESSAGE, ClientPeer, ClientTLS, Closed, Connection, ServerPeer, TokenAuth, TokenRefused, cell_token,
    forwarded_cn, parse_close_command,
)


def _limits_src(name: str, profile: str) -> str:
    return f", {name}={TUNED_MAX_MESSAGE}" if profile == "tuned" else ""


# Reproducer snippets (mtls_matrix.repro, docs/PEERS.md): the same library calls as in this
# module, as plain source for a standalone script; CA, CLIENT_CERT, Closed, report_handler...
# are the script's own names. $identity is where the handler reads the client certificate.
_REPRO_SERVER = Template('''\
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets
from tornado.web import Application
from tornado.websocket import WebSocketHandler


class Handler(WebSocketHandler):
$identity
    def on_message(self, message):
        command = close_command(message)
        if command:
            self.close(*command)
            return None
        return self.write_message(message, binary=isinstance(message, bytes))

    def on_close(self) -> None:
        report_close(self.close_code, self.close_reason)


async def start_server(context: ssl.SSLContext) -> int:
    global SERVER
    SERVER = HTTPServer(Application([(r"/", Handler)]$limits), ssl_options=context)
    sockets = bind_sockets(0, "127.0.0.1")
    SERVER.add_sockets(sockets)
    return sockets[0].getsockname()[1]


async def stop_server() -> None:
    SERVER.stop()
''')

_IDENTITY_IN_PREPARE = '''\
    def prepare(self) -> None:
        self.peer_cert = self.identity = None
        if TOKENS:  # a token-auth server: a response finished in prepare() is never upgraded
            try:
                self.identity = check_token(TOKENS, self.request.headers.get("Authorization"),
                                            self.get_query_argument("token", None))
            except TokenRefused as refused:
                report_refused(refused.reason)
                self.set_status(refused.status)
                self.set_header("WWW-Authenticate", refused.www_authenticate)
                self.finish(refused.reason)
            return
        # HTTPServerRequest.get_ssl_certificate works only before the upgrade (tornado#2994)
        self.peer_cert = self.request.get_ssl_certificate()

    def open(self) -> None:
        report_handler(self.peer_cert, identity=self.identity)
'''

_IDENTITY_IN_OPEN = '''\
    def open(self) -> None:
        # where WebSocketHandler code naturally reads the client certificate
        try:
            peer_cert, error = self.request.get_ssl_certificate(), None
        except Exception as exc:
            peer_cert, error = None, f"{type(exc).__name__}: {exc}"
        report_handler(peer_cert, error)
'''

_REPRO_CLIENT = Template('''\
from tornado.httpclient import HTTPRequest
from tornado.simple_httpclient import HTTPTimeoutError
from tornado.websocket import websocket_connect

TIMEOUTS = (HTTPTimeoutError,)


class Client:
    def __init__(self, ws):
        self.ws = ws
        # the client connection reports pongs only through its on_pong hook
        self.pongs = asyncio.Queue()
        ws.on_pong = self.pongs.put_nowait
        self.closed = False

    @classmethod
    async def connect(cls, url: str, timeout: float) -> "Client":
$request
        return cls(await websocket_connect(request$limits))

    async def send(self, message):
        await self.ws.write_message(message, binary=isinstance(message, bytes))

    async def recv(self):
        message = await self.ws.read_message()
        if message is None:  # closed: code/reason of the close frame received, if any
            self.closed = True
            raise Closed(self.ws.close_code, self.ws.close_reason)
        return message

    async def ping(self, payload: bytes) -> bytes:
        self.ws.ping(payload)
        return await self.pongs.get()

    async def close(self, code: int, reason: str):
        if self.closed:
            return  # "closed" (None) comes once; another read_message() would wait forever
        self.ws.close(code, reason)  # only sends the close frame; wait for the connection to end
        while await self.ws.read_message() is not None:
            pass
''')

_REPRO_REQUESTS = {
    "ssl_options=context": '''\
        context = ssl.create_default_context(cafile=CA)
        if CLIENT_CERT:
            context.load_cert_chain(CLIENT_CERT, CLIENT_KEY)
        request = HTTPRequest(url, ssl_options=context, headers=HEADERS, connect_timeout=timeout,
                              request_timeout=timeout)''',
    "ssl_options=dict": '''\
        options = {"ca_certs": CA}
        if CLIENT_CERT:
            options |= {"certfile": CLIENT_CERT, "keyfile": CLIENT_KEY}
        request = HTTPRequest(url, ssl_options=options, headers=HEADERS, connect_timeout=timeout,
                              request_timeout=timeout)''',
    "ssl_options=dict+cert_reqs": '''\
        options = {"ca_certs": CA, "cert_reqs": ssl.CERT_REQUIRED}
        if CLIENT_CERT:
            options |= {"certfile": CLIENT_CERT, "keyfile": CLIENT_KEY}
        request = HTTPRequest(url, ssl_options=options, headers=HEADERS, connect_timeout=timeout,
                              request_timeout=timeout)''',
    "request=paths": '''\
        request = HTTPRequest(url, ca_certs=CA, client_cert=CLIENT_CERT, client_key=CLIENT_KEY, headers=HEADERS,
                              connect_timeout=timeout, request_timeout=timeout)''',
}


class _Handler(WebSocketHandler):
    def initialize(self, live: set, behind_proxy: bool, token_auth: TokenAuth | None = None) -> None:
        self.live = live  # the server's open handlers: detached from HTTPServer, so it cannot close them
        self.behind_proxy = behind_proxy
        self.token_auth = token_auth

    def prepare(self) -> None:
        # tornado's documented way to the client certificate, HTTPServerRequest.get_ssl_certificate,
        # works only before the upgrade: open() runs after the stream is detached from the request's
        # connection and it raises AttributeError there (tornadoweb/tornado#2994).
        if self.token_auth:  # a token-auth listener: a response finished in prepare() is never upgraded
            try:
                self.peer_cn = self.token_auth.identity(cell_token(self.request.path),
                                                        self.request.headers.get("Authorization"),
                                                        self.get_query_argument("token", None))
            except TokenRefused as refused:
                self.set_status(refused.status)
                self.set_header("WWW-Authenticate", refused.www_authenticate)
                self.finish(refused.reason)
        elif self.behind_proxy:  # a plain listener only the TLS-terminating proxy reaches (peers/proxy.py)
            self.peer_cn = forwarded_cn(self.request.headers)
        else:
            self.peer_cn = observe.subject_cn(self.request.get_ssl_certificate(binary_form=True))

    def open(self, token: str) -> None:
        self.token = token
        self.live.add(self)
        observe.server_event(token, "handler", peer_cn=self.peer_cn)

    def on_message(self, message):
        command = parse_close_command(message)
        if command:
            self.close(*command)
            return None
        return self.write_message(message, binary=isinstance(message, bytes))  # awaited: flow control

    def on_close(self) -> None:
        self.live.discard(self)
        # close_code/close_reason: the close frame received from the client (None if none came)
        observe.server_event(self.token, "handler-close", code=self.close_code, reason=self.close_reason)


class _IdentityInOpenHandler(_Handler):
    """Reads the client certificate in open(), where WebSocketHandler code naturally would."""

    def prepare(self) -> None:
        pass

    def open(self, token: str) -> None:
        try:
            self.peer_der = self.request.get_ssl_certificate(binary_form=True)
            error = None
        except Exception as exc:  # tornadoweb/tornado#2994: the request lost its stream at the upgrade
            self.peer_der, error = None, f"{type(exc).__name__}: {exc}"
        self.token = token
        self.live.add(self)
        observe.server_event(token, "handler", peer_cn=observe.subject_cn(self.peer_der), identity_error=error)


# WebSocketProtocol13.close aborts the connection this long after sending its close frame when no close
# frame answers it: a constant in tornado/websocket.py, no argument sets it
CLOSE_ABORT_S = 5.0


class Server(ServerPeer):
    name = library = "tornado"
    handler = _Handler
    clocks = {"handshake": ("SSLIOStream handshake",)}

    def own_timeouts(self):
        # HTTPServer's idle_connection_timeout starts only once TLS is done
        return {"SSLIOStream handshake": None}

    async def start(self, context: ssl.SSLContext, profile: str) -> int:
        settings = {"websocket_max_message_size": TUNED_MAX_MESSAGE} if profile == "tuned" else {}
        self._live: set[_Handler] = set()
        app = Application([(r"/cell/(.*)", self.handler, {"live": self._live, "behind_proxy": self.behind_proxy,
                                                          "token_auth": self.token_auth})], **settings)
        self._server = HTTPServer(app, ssl_options=context)
        sockets = bind_sockets(0, "127.0.0.1")
        self._server.add_sockets(sockets)
        return sockets[0].getsockname()[1]

    def repro_server(self, profile: str) -> str:
        return _REPRO_SERVER.substitute(identity=self.repro_identity,
                                        limits=_limits_src("websocket_max_message_size", profile))

    repro_identity = _IDENTITY_IN_PREPARE

    async def stop(self) -> None:
        self._server.stop()
        for handler in list(self._live):
            handler.close()
        await self._server.close_all_connections()


class _Conn(Connection):
    def __init__(self, ws):
        self.ws = ws
        # The client connection has no pong future or callback argument; it calls its on_pong(data)
        # hook (a no-op, overridable like WebSocketHandler.on_pong). websocket_connect builds the
        # connection itself, so the hook is set on the instance.
        self.pongs: asyncio.Queue[bytes] = asyncio.Queue()
        ws.on_pong = self.pongs.put_nowait
        self.closed = False

    async def send(self, message):
        await self.ws.write_message(message, binary=isinstance(message, bytes))

    async def recv(self):
        message = await self.ws.read_message()
        if message is None:  # tornado's "closed": code/reason of the close frame received, if any
            self.closed = True
            code, reason = self.ws.close_code, self.ws.close_reason
            raise Closed(code, reason, ("tornado.websocket.WebSocketClientConnection.read_message",
                                        f"returned None: close_code {code}, close_reason {reason!r}"))
        return message

    async def ping(self, payload):
        self.ws.ping(payload)
        return await self.pongs.get()

    async def close(self, code, reason):
        if self.closed:
            return  # tornado delivers "closed" (None) once; another read_message() would wait forever
        self.ws.close(code, reason)  # only sends the close frame; wait for the connection to end
        while await self.ws.read_message() is not None:
            pass


class Client(ClientPeer):
    name = library = "tornado"
    variants = ("ssl_options=context", "ssl_options=dict", "request=paths", "ssl_options=dict+cert_reqs")
    variant_scenarios = {"ssl_options=dict+cert_reqs": TLS_SETTINGS_SCENARIOS}

    async def connect(self, variant, url, tls: ClientTLS, profile, timeout):
        request_kw = {"connect_timeout": timeout, "request_timeout": timeout} if timeout else {}
        if tls.headers:
            request_kw["headers"] = dict(tls.headers)
        if variant == "ssl_options=context":
            request = HTTPRequest(url, ssl_options=tls.context(), **request_kw)
        elif variant.startswith("ssl_options=dict"):
            options = {"ca_certs": str(tls.ca)}
            if variant.endswith("+cert_reqs"):
                options["cert_reqs"] = ssl.CERT_REQUIRED
            if tls.cert:
                options |= {"certfile": str(tls.cert), "keyfile": str(tls.key)}
            request = HTTPRequest(url, ssl_options=options, **request_kw)
        else:
            request = HTTPRequest(url, ca_certs=str(tls.ca), client_cert=tls.cert and str(tls.cert),
                                  client_key=tls.key and str(tls.key), **request_kw)
        limits = {"max_message_size": TUNED_MAX_MESSAGE} if profile == "tuned" else {}
        return _Conn(await websocket_connect(request, **limits))

    clocks = {"handshake": ("connect_timeout", "request_timeout"), "upgrade": ("request_timeout",),
              "read": ("ping_interval",), "close": ("close abort",)}

    def own_timeouts(self, variant):
        defaults = HTTPRequest._DEFAULTS  # what simple_httpclient fills in for an unset timeout
        ping = inspect.signature(websocket_connect).parameters["ping_interval"].default
        return {"connect_timeout": defaults["connect_timeout"], "request_timeout": defaults["request_timeout"],
                "ping_interval": ping, "close abort": CLOSE_ABORT_S}

    def repro_client(self, variant: str, profile: str) -> str:
        return _REPRO_CLIENT.substitute(request=_REPRO_REQUESTS[variant],
                                        limits=_limits_src("max_message_size", profile))

    def canonical(self, exc):
        # simple_httpclient reports failures as HTTPClientError subclasses with a fake code 599
        if isinstance(exc, HTTPTimeoutError):
            return "TIMEOUT"
        if isinstance(exc, HTTPStreamClosedError):  # the stream closed with no underlying error
            return "EOF"
        if isinstance(exc, HTTPClientError):
            return f"HTTP_{exc.code}"
        if isinstance(exc, StreamClosedError) and exc.real_error is None:
            return "EOF"  # with a real_error, simple_httpclient raises that error instead
        if isinstance(exc, Closed) and exc.code is None:
            return "ABNORMAL_CLOSE"  # "closed" with no close frame received: what 1006 stands for
        if isinstance(exc, WebSocketClosedError):
            return "EOF"  # a write on a closed stream: tornado keeps no cause and no close frame
        return None


class ServerIdentityInOpen(Server):
    """Only the question it exists for: can the handler see who connected?"""

    name = "tornado[identity=open]"
    handler = _IdentityInOpenHandler
    groups = ("works", "client-rejected")
    repro_identity = _IDENTITY_IN_OPEN

    def repro_server(self, profile: str) -> str:  # its own: repro only trusts a peer's own snippets
        return super().repro_server(profile)


PEERS = [Server(), ServerIdentityInOpen(), Client()]
