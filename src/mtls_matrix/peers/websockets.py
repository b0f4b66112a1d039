"""websockets (the asyncio API): server and client.

Defaults that matter: max_size is 1 MiB (a larger message closes with 1009), permessage-deflate
is on. The tuned profile raises max_size.
"""

from __future__ import annotations

import ssl

import websockets
from websockets.asyncio.client import connect
from websockets.asyncio.server import serve

from mtls_matrix import observe
from mtls_matrix.peers import (
    TUNED_MAX_MESSAGE, ClientPeer, ClientTLS, Closed, Connection, ServerPeer, cell_token, parse_close_command,
)


def _limits(profile: str) -> dict:
    return {"max_size": TUNED_MAX_MESSAGE} if profile == "tuned" else {}


class Server(ServerPeer):
    name = library = "websockets"

    async def start(self, context: ssl.SSLContext, profile: str) -> int:
        self._server = await serve(self._handler, "127.0.0.1", 0, ssl=context, **_limits(profile))
        return self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        self._server.close()
        await self._server.wait_closed()

    async def _handler(self, ws) -> None:
        token = cell_token(ws.request.path)
        der = ws.transport.get_extra_info("ssl_object").getpeercert(binary_form=True)
        observe.server_event(token, "handler", peer_cn=observe.subject_cn(der))
        try:
            async for message in ws:
                command = parse_close_command(message)
                if command:
                    await ws.close(*command)
                    break
                await ws.send(message)
        finally:
            observe.server_event(token, "handler-close", code=ws.close_code, reason=ws.close_reason)


class _Conn(Connection):
    def __init__(self, ws):
        self.ws = ws

    async def send(self, message):
        await self.ws.send(message)

    async def recv(self):
        try:
            return await self.ws.recv()
        except websockets.ConnectionClosed as exc:
            frame = exc.rcvd or exc.sent  # sent: this side failed the connection (e.g. 1009 on receive)
            raise Closed(frame.code if frame else None, frame.reason if frame else None) from exc

    async def ping(self, payload):
        await (await self.ws.ping(payload))  # resolves only on the pong carrying this payload
        return payload

    async def close(self, code, reason):
        await self.ws.close(code, reason)


class Client(ClientPeer):
    name = library = "websockets"
    variants = ("ssl=context",)

    async def connect(self, variant, url, tls: ClientTLS, profile, timeout):
        return _Conn(await connect(url, ssl=tls.context(), open_timeout=timeout, **_limits(profile)))

    def canonical(self, exc):
        if isinstance(exc, websockets.InvalidStatus):
            return f"HTTP_{exc.response.status_code}"
        if isinstance(exc, websockets.ConnectionClosed) and exc.rcvd is None:
            return "EOF"
        return None


PEERS = [Server(), Client()]
