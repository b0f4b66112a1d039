"""Node's `ws` package (fixtures/node/ws-peer.js), server and client, through the foreign-peer
contract (peers/foreign.py, docs/FOREIGN.md).

Node verifies a peer certificate itself, after OpenSSL's handshake (its OpenSSL verify callback
accepts everything), and with `rejectUnauthorized` destroys the socket: the other side sees a
completed handshake and then the connection close, not an alert. Only a missing client
certificate is refused inside the handshake (SSL_VERIFY_FAIL_IF_NO_PEER_CERT).
"""

from __future__ import annotations

from mtls_matrix.peers.foreign import ErrorRule, ForeignClient, ForeignServer, Toolchain

# --ignore-scripts: no package's install script runs (setup-foreign may run as root); none of the
# locked packages needs one
NODE = Toolchain("node", executables=("node", "npm"), apt=("nodejs", "npm"),
                 steps=(("npm", "ci", "--ignore-scripts", "--no-audit", "--no-fund"),),
                 built=("node_modules/.package-lock.json",), inputs=("package-lock.json",), created=("node_modules",))
COMMAND = ("node", "{fixtures}/node/ws-peer.js")
VERSION_FILE = "node_modules/ws/package.json"

# Node's own checks of the other side's certificate (err.code: OpenSSL's X509_V_ERR names, and
# Node's own hostname check), then what OpenSSL says about a missing client certificate.
ERRORS = (
    ErrorRule(r"ERR_TLS_CERT_ALTNAME_INVALID", "HOSTNAME_MISMATCH", own_check=True),
    ErrorRule(r"\bCERT_HAS_EXPIRED", "CERT_EXPIRED", own_check=True),
    ErrorRule(r"\bCERT_NOT_YET_VALID", "CERT_NOT_YET_VALID", own_check=True),
    ErrorRule(r"\bCERT_REVOKED", "CERT_REVOKED", own_check=True),
    ErrorRule(r"\bINVALID_PURPOSE", "BAD_EKU", own_check=True),
    ErrorRule(r"\b(UNABLE_TO_VERIFY_LEAF_SIGNATURE|UNABLE_TO_GET_ISSUER_CERT|SELF_SIGNED_CERT_IN_CHAIN"
              r"|DEPTH_ZERO_SELF_SIGNED_CERT)", "UNKNOWN_CA", own_check=True),
    ErrorRule(r"UNABLE_TO_GET_CRL", "CRL_MISSING", own_check=True),
    ErrorRule(r"peer did not return a certificate", "CERT_REQUIRED", own_check=True),
    ErrorRule(r"ECONNRESET|EPIPE|socket hang up", "CONNECTION_RESET"),
    ErrorRule(r"ECONNREFUSED", "CONNECTION_REFUSED"),
    ErrorRule(r"ETIMEDOUT|Opening handshake has timed out", "TIMEOUT"),
)


class Server(ForeignServer):
    name, library, toolchain, command, errors, version_file = "node-ws", "ws", NODE, COMMAND, ERRORS, VERSION_FILE
    stack = "Node tls"
    # Node's documented defaults (tls.createServer, http.createServer); ws adds none
    timeouts = {"tls handshakeTimeout": 120.0, "http headersTimeout": 60.0, "http requestTimeout": 300.0}
    clocks = {"handshake": ("tls handshakeTimeout",)}


class Client(ForeignClient):
    name, library, toolchain, command, errors, version_file = "node-ws", "ws", NODE, COMMAND, ERRORS, VERSION_FILE
    stack = "Node tls"
    variants = ("options", "agent", "secureContext")
    # ws documents no default handshakeTimeout: the opening handshake may wait forever; its close waits
    # for the server's close frame 30 s (a constant in lib/websocket.js), then destroys the socket
    timeouts = {"ws handshakeTimeout": None, "ws closeTimeout": 30.0}
    clocks = {"handshake": ("ws handshakeTimeout",), "upgrade": ("ws handshakeTimeout",), "close": ("ws closeTimeout",)}


PEERS = [Server(), Client()]
