"""websockets (the asyncio API): server and client.

Defaults that matter: max_size is 1 MiB (a larger message closes with 1009), permessage-deflate
is on. The tuned profile raises max_size.
"""

from __future__ import annotations

import asyncio
import inspect
import ssl
from string import Template

import websockets
from websockets.asyncio.client import connect
from websockets.asyncio.server import serve

from mtls_matrix import observe
from mtls_matrix.peers import (
    TUNED_MAX_MESSAGE, ClientPeer, ClientTLS, Closed, Connection, ServerPeer, TokenRefused, cell_token, forwarded_cn,
    parse_close_command, query_token,
)


def _limits(profile: str) -> dict:
    return {"max_size": TUNED_MAX_MESSAGE} if profile == "tuned" else {}


def _limits_src(profile: str) -> str:
    return "".join(f", {k}={v}" for k, v in _limits(profile).items())


# Reproducer snippets (mtls_matrix.repro, docs/PEERS.md): the same library calls as above, as
# plain source for a standalone script; CA, CLIENT_CERT, Closed, report_handler... are the
# script's own names.
_REPRO_SERVER = Template('''\
from websockets.asyncio.server import serve


def authorize(connection, request):
    """A token-auth server refuses before the upgrade: process_request returns a response."""
    try:
        connection.username = check_token(TOKENS, request.headers.get("Authorization"), query_token(request.path))
    except TokenRefused as refused:
        report_refused(refused.reason)
        response = connection.respond(refused.status, refused.reason + "\\n")
        response.headers["WWW-Authenticate"] = refused.www_authenticate
        return response
    return None


async def handler(ws):
    if TOKENS:
        report_handler(None, identity=ws.username)  # the identity the token named (authorize)
    else:  # the client certificate, as asyncio exposes it to the application
        report_handler(ws.transport.get_extra_info("peercert"))
    try:
        async for message in ws:
            command = close_command(message)
            if command:
                await ws.close(*command)
                break
            await ws.send(message)
    finally:
        report_close(ws.close_code, ws.close_reason)


async def start_server(context: ssl.SSLContext) -> int:
    global SERVER
    SERVER = await serve(handler, "127.0.0.1", 0, ssl=context, process_request=authorize if TOKENS else None$limits)
    return SERVER.sockets[0].getsockname()[1]


async def stop_server() -> None:
    SERVER.close()
    await SERVER.wait_closed()
''')

_REPRO_CLIENT = Template('''\
import websockets
from websockets.asyncio.client import connect

TIMEOUTS = ()  # open_timeout raises TimeoutError


class Client:
    def __init__(self, ws):
        self.ws = ws

    @classmethod
    async def connect(cls, url: str, timeout: float) -> "Client":
        context = ssl.create_default_context(cafile=CA)
        if CLIENT_CERT:
            context.load_cert_chain(CLIENT_CERT, CLIENT_KEY)
        return cls(await connect(url, ssl=context, additional_headers=HEADERS, open_timeout=timeout$limits))

    async def send(self, message):
        await self.ws.send(message)

    async def recv(self):
        try:
            return await self.ws.recv()
        except websockets.ConnectionClosed as exc:
            frame = exc.rcvd or exc.sent  # sent: this side failed the connection (e.g. 1009)
            raise Closed(frame.code if frame else None, frame.reason if frame else None) from exc

    async def ping(self, payload: bytes) -> bytes:
        await (await self.ws.ping(payload))  # resolves on the pong carrying this payload
        return payload

    async def close(self, code: int, reason: str):
        await self.ws.close(code, reason)
''')


_REPRO_SYNC_CLIENT = Template('''\
import websockets
from websockets.sync.client import connect

TIMEOUTS = ()  # open_timeout raises TimeoutError


class Client:
    """The threading client: blocking calls, fine on the script's client thread."""

    def __init__(self, ws):
        self.ws = ws

    @classmethod
    async def connect(cls, url: str, timeout: float) -> "Client":
        context = ssl.create_default_context(cafile=CA)
        if CLIENT_CERT:
            context.load_cert_chain(CLIENT_CERT, CLIENT_KEY)
        return cls(connect(url, ssl=context, additional_headers=HEADERS, open_timeout=timeout$limits))

    async def send(self, message):
        try:
            self.ws.send(message)
        except websockets.ConnectionClosed as exc:
            raise _closed(exc) from exc

    async def recv(self):
        try:
            return self.ws.recv()
        except websockets.ConnectionClosed as exc:
            raise _closed(exc) from exc

    async def ping(self, payload: bytes) -> bytes:
        self.ws.ping(payload).wait(10)
        return payload

    async def close(self, code: int, reason: str):
        self.ws.close(code, reason)
''')


class Server(ServerPeer):
    name = library = "websockets"
    clocks = {"handshake": ("asyncio ssl_handshake_timeout", "open_timeout")}

    def own_timeouts(self):
        # asyncio runs the TLS handshake before websockets sees the connection
        return {"asyncio ssl_handshake_timeout": asyncio.constants.SSL_HANDSHAKE_TIMEOUT,
                "open_timeout": inspect.signature(serve).parameters["open_timeout"].default}

    async def start(self, context: ssl.SSLContext, profile: str) -> int:
        checks = {"process_request": self._authorize} if self.token_auth else {}
        self._server = await serve(self._handler, "127.0.0.1", 0, ssl=context, **checks, **_limits(profile))
        return self._server.sockets[0].getsockname()[1]

    def _authorize(self, connection, request):
        """A token-auth listener: the documented place to refuse before the upgrade (process_request
        returns a response), and to keep the identity for the handler (an attribute of the connection)."""
        try:
            connection.username = self.token_auth.identity(
                cell_token(request.path), request.headers.get("Authorization"), query_token(request.path))
        except TokenRefused as refused:
            response = connection.respond(refused.status, refused.reason + "\n")
            response.headers["WWW-Authenticate"] = refused.www_authenticate
            return response
        return None

    async def stop(self) -> None:
        self._server.close()
        await self._server.wait_closed()

    def repro_server(self, profile: str) -> str:
        return _REPRO_SERVER.substitute(limits=_limits_src(profile))

    async def _handler(self, ws) -> None:
        token = cell_token(ws.request.path)
        if self.token_auth:
            peer_cn = ws.username  # the identity the token named (_authorize)
        elif self.behind_proxy:  # a plain listener only the TLS-terminating proxy reaches (peers/proxy.py)
            peer_cn = forwarded_cn(ws.request.headers)
        else:
            peer_cn = observe.subject_cn(ws.transport.get_extra_info("ssl_object").getpeercert(binary_form=True))
        observe.server_event(token, "handler", peer_cn=peer_cn)
        try:
            async for message in ws:
                command = parse_close_command(message)
                if command:
                    await ws.close(*command)
                    break
                await ws.send(message)
        finally:
            observe.server_event(token, "handler-close", code=ws.close_code, reason=ws.close_reason)


def _closed(exc: websockets.ConnectionClosed) -> Closed:
    """The close frame that ended the connection, whichever call (send or recv) noticed it first: the
    peer's (rcvd), else this side's (sent: it failed the connection, e.g. 1009 on a too-big message)."""
    frame = exc.rcvd or exc.sent
    return Closed(frame.code if frame else None, frame.reason if frame else None)


class _Conn(Connection):
    def __init__(self, ws):
        self.ws = ws

    async def send(self, message):
        try:
            await self.ws.send(message)
        except websockets.ConnectionClosed as exc:
            raise _closed(exc) from exc

    async def recv(self):
        try:
            return await self.ws.recv()
        except websockets.ConnectionClosed as exc:
            raise _closed(exc) from exc

    async def ping(self, payload):
        await (await self.ws.ping(payload))  # resolves only on the pong carrying this payload
        return payload

    async def close(self, code, reason):
        await self.ws.close(code, reason)


class _SyncConn(Connection):
    """websockets.sync.client: blocking calls, fine on the cell's own client thread."""

    def __init__(self, ws):
        self.ws = ws

    async def send(self, message):
        try:
            self.ws.send(message)
        except websockets.ConnectionClosed as exc:
            raise _closed(exc) from exc

    async def recv(self):
        try:
            return self.ws.recv()
        except websockets.ConnectionClosed as exc:
            raise _closed(exc) from exc

    async def ping(self, payload):
        if not self.ws.ping(payload).wait(10):  # an Event set by the pong carrying this payload
            raise TimeoutError("no pong within 10 s")
        return payload

    async def close(self, code, reason):
        self.ws.close(code, reason)


class Client(ClientPeer):
    name = library = "websockets"
    # docs: "Client (asyncio)" connect(ssl=...) and "Client (threading)" websockets.sync.client.connect(ssl=...),
    # both taking an SSLContext (the FAQ's "How do I connect to a server with TLS?")
    variants = ("ssl=context", "sync+ssl=context")
    # after the upgrade only its keepalive notices a silent peer: a ping left unanswered, then the close
    # handshake it starts with 1011
    clocks = {"handshake": ("open_timeout",), "upgrade": ("open_timeout",),
              "read": ("ping_interval+ping_timeout+close_timeout",), "close": ("close_timeout",)}

    async def connect(self, variant, url, tls: ClientTLS, profile, timeout):
        timeouts = {"open_timeout": timeout} if timeout else {}
        headers = {"additional_headers": list(tls.headers)} if tls.headers else {}
        if variant.startswith("sync+"):
            from websockets.sync.client import connect as sync_connect  # 11.0 and later

            return _SyncConn(sync_connect(url, ssl=tls.context(), **headers, **timeouts, **_limits(profile)))
        return _Conn(await connect(url, ssl=tls.context(), **headers, **timeouts, **_limits(profile)))

    def own_timeouts(self, variant):
        defaults = inspect.signature(connect).parameters
        return {name: defaults[name].default for name in ("open_timeout", "close_timeout", "ping_interval",
                                                           "ping_timeout")}

    def repro_client(self, variant: str, profile: str) -> str:
        if variant.startswith("sync+"):
            return _REPRO_SYNC_CLIENT.substitute(limits=_limits_src(profile))
        return _REPRO_CLIENT.substitute(limits=_limits_src(profile))

    def canonical(self, exc):
        if isinstance(exc, websockets.InvalidStatus):
            return f"HTTP_{exc.response.status_code}"
        if isinstance(exc, websockets.ConnectionClosed) and exc.rcvd is None:
            return "EOF"
        return None


PEERS = [Server(), Client()]
