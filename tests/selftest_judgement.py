"""Selftest peers for how the matrix judges and gates (severity, controls, confirmation, order).

Loaded with `--peer-plugin tests.selftest_judgement`. Each is a real library over real TLS, changed
in exactly one way.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from urllib.parse import urlsplit

from websockets.asyncio.client import connect

from mtls_matrix.peers import socketio as sio_peer
from mtls_matrix.peers import websockets as ws_peer
from mtls_matrix.usercode import websockets_client

from tests.selftest_peers import WsServer


class ControlClient(ws_peer.Client):
    """websockets with server verification switched off on purpose, declared as a control: its
    INSECURE where the client must reject the server proves that server's certificate is bad."""

    name = "selftest-control"
    variants = ("verify=none",)
    only = {"verify=none": ("server-rejected",)}
    controls = {"verify=none": "ssl.CERT_NONE and no hostname check: it verifies no server certificate, on purpose"}

    async def connect(self, variant, url, tls, profile, timeout):
        ctx = tls.context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        return websockets_client.ClientConnection(await connect(url, ssl=ctx, open_timeout=timeout))


class FirstConnectionRefusedServer(WsServer):
    """websockets that refuses the first connection of each listener (close 1013, try again later)
    after a real mutual-TLS handshake, and serves every later one: a cell that fails once, then
    passes when it is run again. A one-cell slice has one listener, so it is deterministic."""

    name = "selftest-first-refused"

    async def start(self, context, profile):
        self._connections = 0
        return await super().start(context, profile)

    async def _handler(self, ws):
        self._connections += 1
        if self._connections == 1:
            await ws.close(1013, "the first connection is refused")
            return
        await super()._handler(ws)


class AlwaysRefusedServer(WsServer):
    """websockets that refuses every connection after the TLS handshake (close 1013): a failure that
    reproduces on every run."""

    name = "selftest-always-refused"

    async def _handler(self, ws):
        await ws.close(1013, "every connection is refused")


class SlowServer(WsServer):
    """websockets that waits SLOW_S before it serves each connection: slower than a short harness
    deadline, and it always ends (as a library does on a busy machine)."""

    name = "selftest-slow"
    SLOW_S = 1.5

    async def _handler(self, ws):
        await asyncio.sleep(self.SLOW_S)
        await super()._handler(ws)


HELD: list[socket.socket] = []  # what HalfDoneClient leaves behind: open TCP connections that never send a byte


class HalfDoneClient(sio_peer.AsyncClient):
    """python-socketio's AsyncClient, which after its cell's script opens one more TCP connection to the
    server and leaves it there without a ClientHello (as a client whose loop stopped mid-connect
    would): its own cell is unaffected, a server that serialises TLS handshakes on one listener waits
    on it for good."""

    name = "selftest-half-done"
    variants = ("http_session=connector+websocket",)

    async def connect(self, variant, url, tls, profile, timeout):
        conn = await super().connect(variant, url, tls, profile, timeout)
        address = urlsplit(url)
        cleanup = conn.cleanup

        async def leave_one_half_done():
            await cleanup()
            HELD.append(socket.create_connection((address.hostname, address.port)))

        conn.cleanup = leave_one_half_done
        return conn


PEERS = [ControlClient(), FirstConnectionRefusedServer(), AlwaysRefusedServer(), SlowServer(), HalfDoneClient()]
