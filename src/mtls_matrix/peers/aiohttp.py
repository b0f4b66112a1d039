"""aiohttp: web server (WebSocketResponse) and client (ClientSession.ws_connect). The library code
is in usercode/aiohttp_*.py.

Defaults that matter: max_msg_size is 4 MiB on both sides (a larger message closes with 1009);
the server accepts permessage-deflate when a client offers it, the client does not offer it;
autoping consumes pongs (so ping is unsupported). The tuned profile raises max_msg_size.
"""

from __future__ import annotations

import asyncio
import inspect
import ssl

import aiohttp

from mtls_matrix.canonical import CLOSE_CODES
from mtls_matrix.peers import ClientPeer, ServerPeer
from mtls_matrix.scenarios import CLIENT_SIDE_GROUPS, DEFAULT_GROUPS, TLS_SETTINGS_SCENARIOS
from mtls_matrix.timing import HANDLER_STOP_GRACE_S
from mtls_matrix.usercode import aiohttp_client, aiohttp_server


class Server(ServerPeer):
    name = library = "aiohttp"
    usercode = aiohttp_server
    # also the scenarios that vary only the client's side: one server of the family shows them
    groups = DEFAULT_GROUPS + CLIENT_SIDE_GROUPS
    clocks = {"handshake": ("asyncio ssl_handshake_timeout",)}

    def own_timeouts(self):
        return {"asyncio ssl_handshake_timeout": asyncio.constants.SSL_HANDSHAKE_TIMEOUT}

    async def start(self, context: ssl.SSLContext, profile: str) -> int:
        # the harness waits HANDLER_STOP_GRACE_S for the handlers still running at stop, not aiohttp's 60 s
        self._server, port = await self.usercode.start_server(context, self.hooks, profile,
                                                              shutdown_timeout=HANDLER_STOP_GRACE_S)
        return port


class Client(ClientPeer):
    name = library = "aiohttp"
    usercode = aiohttp_client
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

    def own_timeouts(self, variant):
        session = aiohttp.client.DEFAULT_TIMEOUT
        ws = inspect.signature(aiohttp.ClientSession.ws_connect).parameters
        close = getattr(aiohttp.client_ws, "DEFAULT_WS_CLIENT_TIMEOUT", None)  # what an unset timeout= means
        return {"session total": session.total, "session sock_connect": session.sock_connect,
                "ws_connect heartbeat": ws["heartbeat"].default, "ws_close": close and close.ws_close}

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


PEERS = [Server(), Client()]
