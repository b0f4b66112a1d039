"""websockets as a client: the asyncio connect() and the threading websockets.sync.client.connect(),
each given an SSLContext (the FAQ's "How do I connect to a server with TLS?")."""

from __future__ import annotations

import ssl

import websockets
from websockets.asyncio.client import connect

from mtls_matrix.protocol import TUNED_MAX_MESSAGE, Closed, Connection

TIMEOUTS = ()  # open_timeout raises TimeoutError


def client_closed(exc: websockets.ConnectionClosed) -> Closed:
    """The close frame that ended the connection, whichever call (send or recv) noticed it first: the
    peer's (rcvd), else this side's (sent: it failed the connection, e.g. 1009 on a too-big message)."""
    frame = exc.rcvd or exc.sent
    return Closed(frame.code if frame else None, frame.reason if frame else None)


class ClientConnection(Connection):
    def __init__(self, ws):
        self.ws = ws

    async def send(self, message):
        try:
            await self.ws.send(message)
        except websockets.ConnectionClosed as exc:
            raise client_closed(exc) from exc

    async def recv(self):
        try:
            return await self.ws.recv()
        except websockets.ConnectionClosed as exc:
            raise client_closed(exc) from exc

    async def ping(self, payload):
        await (await self.ws.ping(payload))  # resolves only on the pong carrying this payload
        return payload

    async def close(self, code, reason):
        await self.ws.close(code, reason)


class ClientSyncConnection(Connection):
    """websockets.sync.client: blocking calls, fine on the client's own thread."""

    def __init__(self, ws):
        self.ws = ws

    async def send(self, message):
        try:
            self.ws.send(message)
        except websockets.ConnectionClosed as exc:
            raise client_closed(exc) from exc

    async def recv(self):
        try:
            return self.ws.recv()
        except websockets.ConnectionClosed as exc:
            raise client_closed(exc) from exc

    async def ping(self, payload):
        if not self.ws.ping(payload).wait(10):  # an Event set by the pong carrying this payload
            raise TimeoutError("no pong within 10 s")
        return payload

    async def close(self, code, reason):
        self.ws.close(code, reason)


async def connect_client(variant: str, url: str, ca: str, cert: str | None, key: str | None, headers: list,
                         timeout: float | None, profile: str) -> Connection:
    context = ssl.create_default_context(cafile=ca)
    if cert:
        context.load_cert_chain(cert, key)
    options = {"max_size": TUNED_MAX_MESSAGE} if profile == "tuned" else {}
    if timeout:
        options["open_timeout"] = timeout
    if headers:
        options["additional_headers"] = headers
    if variant == "sync+ssl=context":
        from websockets.sync.client import connect as sync_connect  # 11.0 and later

        return ClientSyncConnection(sync_connect(url, ssl=context, **options))
    return ClientConnection(await connect(url, ssl=context, **options))
