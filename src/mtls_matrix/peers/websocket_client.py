"""websocket-client (`import websocket`): a synchronous, client-only library. The library code, with
its variants (each documented way to give `sslopt`, and WebSocketApp), is in
usercode/websocket_client.py.

It has no message size limit, so the tuned profile changes nothing. Each cell's client runs on its
own thread (cell.py), so the async methods just block; the socket timeout (the cell deadline,
create_connection(timeout=)) makes a stuck call return by itself.
"""

from __future__ import annotations

import inspect

import websocket

from mtls_matrix import observe
from mtls_matrix.scenarios import TLS_SETTINGS_SCENARIOS
from mtls_matrix.peers import ClientPeer, ClientTLS, Connection
from mtls_matrix.usercode import websocket_client


class Client(ClientPeer):
    name = library = "websocket-client"
    usercode = websocket_client
    variants = ("sslopt=context", "sslopt=dict", "sslopt=cert_reqs", "app+sslopt=context")
    variant_scenarios = {"sslopt=cert_reqs": TLS_SETTINGS_SCENARIOS}
    blocking = True

    async def connect(self, variant, url, tls: ClientTLS, profile, timeout) -> Connection:
        if not variant.startswith("app+"):
            return await super().connect(variant, url, tls, profile, timeout)
        # WebSocketApp.run_forever makes the connection on a thread the library code starts: bind the
        # threads started during the call to this cell, so their sockets are attributed to it
        recorder, inherit = observe.connection_recorder(), observe.side_by_side()
        observe.bind_thread(recorder, inherit=True)
        try:
            return await super().connect(variant, url, tls, profile, timeout)
        finally:
            observe.bind_thread(recorder, inherit=inherit)

    # its one `timeout` (the socket's) bounds every read, the opening handshake's too
    clocks = {"handshake": ("timeout",), "upgrade": ("timeout",), "read": ("timeout",), "close": ("close timeout",)}

    def own_timeouts(self, variant):
        close = inspect.signature(websocket.WebSocket.close).parameters["timeout"].default
        return {"timeout": websocket.getdefaulttimeout(), "close timeout": close}

    def canonical(self, exc):
        if isinstance(exc, websocket.WebSocketBadStatusException):
            return f"HTTP_{exc.status_code}"
        if isinstance(exc, websocket.WebSocketConnectionClosedException):
            return "EOF"
        if isinstance(exc, websocket.WebSocketTimeoutException):
            return "TIMEOUT"
        return None


PEERS = [Client()]
