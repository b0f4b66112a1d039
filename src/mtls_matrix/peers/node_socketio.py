"""Node's `socket.io` server and `socket.io-client` client (fixtures/node/socketio-peer.js), family
`socketio`, through the foreign-peer contract (peers/foreign.py, docs/FOREIGN.md), speaking the
echo protocol of the Python socketio peers (peers/socketio.py).

The server is Node's https server (`requestCert`, `rejectUnauthorized`: the same TLS as node-ws);
the application sees the client identity on `socket.request.socket` (the TLS socket of the request
that opened the Engine.IO session). The client takes the documented `ca`, `cert`, `key` options;
its transports are variants as for the Python clients.
"""

from __future__ import annotations

from mtls_matrix.peers import Closed
from mtls_matrix.peers.foreign import ErrorRule, ForeignClient, ForeignServer
from mtls_matrix.peers.node_ws import ERRORS as NODE_TLS_ERRORS
from mtls_matrix.peers.node_ws import NODE
from mtls_matrix.peers.socketio import SCENARIOS_FULL, UNSUPPORTED, closed_canonical

COMMAND = ("node", "{fixtures}/node/socketio-peer.js")

# Node's TLS words first (the same TLS as node-ws: socket.io-client's transports pass the options to
# https.request / ws, and the program reports Node's err.code from the TLS socket underneath), then
# socket.io-client's own.
ERRORS = (
    ErrorRule(r"^NoUpgrade", "NO_UPGRADE"),
    *NODE_TLS_ERRORS,
    ErrorRule(r"\btimeout\b", "TIMEOUT"),
)


class Server(ForeignServer):
    name, library, toolchain, command, errors = "node-socketio", "socket.io", NODE, COMMAND, ERRORS
    stack = "Node tls"
    family = "socketio"
    version_file = "node_modules/socket.io/package.json"
    scenarios = SCENARIOS_FULL  # Node's TLS under Engine.IO: every rejection the Python servers play
    deadline_scale = 0.5  # as the Python socketio servers: what outlasts a cell waits on a 20-45 s timer
    waits = True
    # Node's documented defaults (tls.createServer) and socket.io's (ServerOptions)
    timeouts = {"tls handshakeTimeout": 120.0, "socket.io connectTimeout": 45.0, "engine.io pingInterval": 25.0,
                "engine.io pingTimeout": 20.0, "engine.io upgradeTimeout": 10.0}


class Client(ForeignClient):
    name, library, toolchain, command, errors = "node-socketio", "socket.io-client", NODE, COMMAND, ERRORS
    stack = "Node tls"
    family = "socketio"
    version_file = "node_modules/socket.io-client/package.json"
    variants = ("options+polling", "options+websocket", "options+upgrade", "agent+polling")
    unsupported = UNSUPPORTED
    scenarios = tuple(s for s in SCENARIOS_FULL if s != "io-16mib")  # its base64 through the pipe: see ForeignClient
    servers = ("socketio-aiohttp", "socketio-tornado", "socketio-uvicorn")
    timeouts = {"socket.io-client timeout (connect)": 20.0, "engine.io-client requestTimeout": None}

    def canonical(self, exc):
        if isinstance(exc, Closed):
            return closed_canonical(exc)
        return super().canonical(exc)


PEERS = [Server(), Client()]
