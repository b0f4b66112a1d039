"""websockets (the asyncio API): server and client. The library code is in usercode/websockets_*.py.

Defaults that matter: max_size is 1 MiB (a larger message closes with 1009), permessage-deflate
is on. The tuned profile raises max_size.
"""

from __future__ import annotations

import asyncio
import inspect

import websockets
from websockets.asyncio.client import connect
from websockets.asyncio.server import serve

from mtls_matrix.peers import ClientPeer, ServerPeer
from mtls_matrix.usercode import websockets_client, websockets_server


class Server(ServerPeer):
    name = library = "websockets"
    usercode = websockets_server
    clocks = {"handshake": ("asyncio ssl_handshake_timeout", "open_timeout")}

    def own_timeouts(self):
        # asyncio runs the TLS handshake before websockets sees the connection
        return {"asyncio ssl_handshake_timeout": asyncio.constants.SSL_HANDSHAKE_TIMEOUT,
                "open_timeout": inspect.signature(serve).parameters["open_timeout"].default}


class Client(ClientPeer):
    name = library = "websockets"
    usercode = websockets_client
    # docs: "Client (asyncio)" connect(ssl=...) and "Client (threading)" websockets.sync.client.connect(ssl=...),
    # both taking an SSLContext (the FAQ's "How do I connect to a server with TLS?")
    variants = ("ssl=context", "sync+ssl=context")
    # after the upgrade only its keepalive notices a silent peer: a ping left unanswered, then the close
    # handshake it starts with 1011
    clocks = {"handshake": ("open_timeout",), "upgrade": ("open_timeout",),
              "read": ("ping_interval+ping_timeout+close_timeout",), "close": ("close_timeout",)}

    def own_timeouts(self, variant):
        defaults = inspect.signature(connect).parameters
        return {name: defaults[name].default for name in ("open_timeout", "close_timeout", "ping_interval",
                                                           "ping_timeout")}

    def canonical(self, exc):
        if isinstance(exc, websockets.InvalidStatus):
            return f"HTTP_{exc.response.status_code}"
        if isinstance(exc, websockets.ConnectionClosed) and exc.rcvd is None:
            return "EOF"
        return None


PEERS = [Server(), Client()]
