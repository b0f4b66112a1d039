"""aiohttp as a client: ClientSession.ws_connect, given its TLS settings each documented way (Client
Reference: "ssl" of ClientSession.request/ws_connect and TCPConnector; Advanced Client Usage, "SSL
control for TCP sockets").

A variant with no ssl argument, or ssl=True, verifies against the default store and presents no client
certificate: a user points it at a private CA with SSL_CERT_FILE, set before Python starts (aiohttp
builds its default contexts at import: run a reproducer of one with SSL_CERT_FILE=ca.pem), or set by
the program after importing aiohttp (ssl=True+env-at-run-time).
"""

from __future__ import annotations

import os
import ssl
from urllib.parse import urlsplit, urlunsplit

import aiohttp
from aiohttp import WSMsgType

from mtls_matrix.protocol import TUNED_MAX_MESSAGE, Closed, Connection

TIMEOUTS = ()  # ClientTimeout raises TimeoutError


class ClientConnection(Connection):
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
        await self.session.close()  # the connection is over: close() may never be called
        if msg.type is WSMsgType.ERROR:
            raise msg.data
        # receive() reports the end with a message, not an exception: that message is what its user sees
        shown = (f"{type(msg).__module__}.{type(msg).__qualname__}", f"receive() returned {msg!r}, close_code "
                 f"{self.ws.close_code}")
        if msg.type is WSMsgType.CLOSE:  # data is the code, extra the reason
            raise Closed(msg.data, msg.extra, shown)
        raise Closed(self.ws.close_code, None, shown)  # CLOSING/CLOSED: no close frame to read a reason from

    async def ping(self, payload):
        raise NotImplementedError("aiohttp's default autoping swallows pongs; no public API observes them")

    async def close(self, code, reason):
        try:
            await self.ws.close(code=code, message=reason.encode())
        finally:
            await self.session.close()


def client_other_name(url: str) -> str:
    """The server's other name (localhost <-> 127.0.0.1, both in its certificate) for a plain request."""
    parts = urlsplit(url)
    other = "127.0.0.1" if parts.hostname == "localhost" else "localhost"
    return urlunsplit(("https", f"{other}:{parts.port}", "/", "", ""))


async def connect_client(variant: str, url: str, ca: str, cert: str | None, key: str | None, headers: list,
                         timeout: float | None, profile: str) -> Connection:
    if variant in ("ssl=True", "ssl=default", "ssl=True+env-at-run-time"):
        context = None  # the default store, no client certificate
    else:
        context = ssl.create_default_context(cafile=ca)
        if cert:
            context.load_cert_chain(cert, key)
    if variant == "ssl=True+env-at-run-time":
        os.environ["SSL_CERT_FILE"] = ca  # the program sets it after importing aiohttp
    # the session-wide way: every connection of the session gets the context
    connector = aiohttp.TCPConnector(ssl=context) if variant in ("connector=context", "session=pooled") else None
    # ClientTimeout bounds the opening handshake only (it does not apply after the upgrade)
    session = aiohttp.ClientSession(connector=connector,
                                    **({"timeout": aiohttp.ClientTimeout(total=timeout)} if timeout else {}))
    request = {"headers": dict(headers)} if headers else {}
    options = {"max_msg_size": TUNED_MAX_MESSAGE} if profile == "tuned" else {}
    # per request: an SSLContext as ssl=; the deprecated ssl_context= (it warns, but still has its own branch
    # of the TLS-parameter merge); ssl=True, or no argument at all (the default store)
    tls = {"ssl=context": {"ssl": context}, "ssl_context=context": {"ssl_context": context},
           "ssl=True": {"ssl": True}, "ssl=True+env-at-run-time": {"ssl": True}}.get(variant, {})
    try:
        if variant == "session=pooled":
            # a plain request to the server's other name first: its connection stays in the pool
            async with session.get(client_other_name(url), **request) as response:
                await response.read()  # read to the end: the connection goes back to the pool
        return ClientConnection(session, await session.ws_connect(url, **tls, **request, **options))
    except BaseException:
        await session.close()  # no leaked session (and connector) when the upgrade fails
        raise
