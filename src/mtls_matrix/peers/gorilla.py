"""gorilla/websocket (fixtures/go/mtls-peer, built offline against Debian's package), server and
client, through the foreign-peer contract (peers/foreign.py, docs/FOREIGN.md).

Go's crypto/tls verifies inside the handshake with its own x509 code (not OpenSSL): its words
are its own, hence the table below (fixtures/go/README.md lists what was observed). A Go server
refuses every client certificate with the generic `bad_certificate` alert, and a Go client with
`Certificates` sends none when its issuer is not in the server's CA list.
"""

from __future__ import annotations

import os
import tempfile

from mtls_matrix.peers.foreign import ErrorRule, ForeignClient, ForeignServer, Leftover, Toolchain

GO = Toolchain("go", executables=("go",), apt=("golang", "golang-github-gorilla-websocket-dev"),
               files=("/usr/share/gocode/src/github.com/gorilla/websocket",),
               steps=(("sh", "build.sh"),), built=("build/mtls-peer-go",),
               inputs=("build.sh", "go.mod", "mtls-peer/main.go", "mtls-peer/server.go", "mtls-peer/client.go"),
               created=("build",),
               # the build cache an earlier build.sh kept at this fixed path in the shared temp dir
               leftovers=(Leftover(os.path.join(tempfile.gettempdir(), "mtls-matrix-gocache")),))
COMMAND = ("{fixtures}/go/build/mtls-peer-go",)
PACKAGE = "golang-github-gorilla-websocket-dev"

# Alerts received first (never an own check), then Go's own verification ("is before" before the
# expiry rule: both say "has expired or is not yet valid"), then transport ends.
ERRORS = (
    ErrorRule(r"remote error: tls: (bad certificate|unknown certificate$)", "BAD_CERTIFICATE"),
    ErrorRule(r"remote error: tls: unknown certificate authority", "UNKNOWN_CA"),
    ErrorRule(r"remote error: tls: expired certificate", "CERT_EXPIRED"),
    ErrorRule(r"remote error: tls: revoked certificate", "CERT_REVOKED"),
    ErrorRule(r"remote error: tls: unsupported certificate", "BAD_EKU"),
    ErrorRule(r"remote error: tls: certificate required", "CERT_REQUIRED"),  # handshake failure: as OpenSSL words it
    ErrorRule(r"remote error: tls: protocol version not supported", "PROTOCOL_VERSION"),
    ErrorRule(r"remote error: tls: bad record MAC|remote error", "HANDSHAKE_FAILURE"),
    ErrorRule(r"didn't provide a certificate", "CERT_REQUIRED", own_check=True),
    ErrorRule(r"signed by unknown authority", "UNKNOWN_CA", own_check=True),
    ErrorRule(r"not yet valid: current time \S+ is before", "CERT_NOT_YET_VALID", own_check=True),
    ErrorRule(r"has expired or is not yet valid", "CERT_EXPIRED", own_check=True),
    ErrorRule(r"certificate is valid for|legacy Common Name", "HOSTNAME_MISMATCH", own_check=True),
    ErrorRule(r"incompatible key usage", "BAD_EKU", own_check=True),
    ErrorRule(r"certificate revoked", "CERT_REVOKED", own_check=True),
    ErrorRule(r"offered only unsupported versions|protocol version not supported", "PROTOCOL_VERSION"),
    ErrorRule(r"connection reset by peer", "CONNECTION_RESET"),
    ErrorRule(r"connection refused", "CONNECTION_REFUSED"),
    ErrorRule(r"i/o timeout|timeout", "TIMEOUT"),
    ErrorRule(r"\bEOF\b", "EOF"),
)


class Server(ForeignServer):
    name, library, toolchain, command, errors = "gorilla", "gorilla/websocket", GO, COMMAND, ERRORS
    stack = "Go crypto/tls"
    version_package = PACKAGE
    # net/http's documented zero values: no read, header or idle deadline at all
    timeouts = {"net/http ReadTimeout": None, "net/http ReadHeaderTimeout": None}
    clocks = {"handshake": ("net/http ReadTimeout", "net/http ReadHeaderTimeout")}


class Client(ForeignClient):
    name, library, toolchain, command, errors = "gorilla", "gorilla/websocket", GO, COMMAND, ERRORS
    stack = "Go crypto/tls"
    version_package = PACKAGE
    variants = ("dialer-tlsconfig", "netdialtlscontext", "getclientcertificate")
    timeouts = {"Dialer.HandshakeTimeout": None}  # only websocket.DefaultDialer has 45 s; a Dialer literal has none
    clocks = {"handshake": ("Dialer.HandshakeTimeout",), "upgrade": ("Dialer.HandshakeTimeout",)}


PEERS = [Server(), Client()]
