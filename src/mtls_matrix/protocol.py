"""What library code and the harness agree on: the echo protocol, the close, the token check and the
hooks a server reports through. Standard library only: a reproducer ships this module's source
beside the library code it copies (repro.py), so both run the same lines.
"""

from __future__ import annotations

import re
import ssl
from abc import ABC, abstractmethod
from typing import Any
from urllib.parse import parse_qs, urlsplit

# The ws-family echo protocol every server speaks: echo each message with its type; a text
# message "__close__ CODE REASON" asks the server to close with that code and reason.
CLOSE_COMMAND = "__close__"
# the tuned profile's message-size limit: raised well above the scenarios' largest message
TUNED_MAX_MESSAGE = 64 * 1024 * 1024
# the harness's own close at the end of a script that did not close: housekeeping, not under test
FINAL_CLOSE = (1000, "done")
TOKEN_SHAPE = re.compile(r"[A-Za-z0-9_-]+\Z")  # what a token looks like (secrets.token_urlsafe)


def parse_close_command(message: Any) -> tuple[int, str] | None:
    if isinstance(message, str) and message.startswith(CLOSE_COMMAND + " "):
        _, code, reason = message.split(" ", 2)
        return int(code), reason
    return None


class Closed(Exception):
    """The connection ended; code/reason as the client library reports them. The harness's own
    normalisation for the steps that expect a close, never what a user is shown: that is the
    exception the library raised (this one's __cause__), or, for a library that reports the end
    with a value or a callback, `shown`: (what reported it, in the library's own terms; what it said)."""

    def __init__(self, code: int | None, reason: str | None, shown: tuple[str, str] | None = None):
        super().__init__(f"closed with code {code} reason {reason!r}")
        self.code, self.reason, self.shown = code, reason, shown


class NoOutcome(TimeoutError):
    """An adapter's own wait for the library ended (an acknowledgement that never came): the harness's
    timeout, not an error the library raised to its user, who was told nothing (cell.user_error)."""


class Connection(ABC):
    """An open client connection. Sync libraries implement these as plain blocking calls: each
    cell's client runs on its own thread and event loop, so blocking there blocks nobody else."""

    @abstractmethod
    async def send(self, message: str | bytes) -> None: ...

    @abstractmethod
    async def recv(self) -> str | bytes:
        """The next data message; raises Closed when the peer closed the connection."""

    @abstractmethod
    async def ping(self, payload: bytes) -> bytes:
        """Send a ping and return the payload of the pong that answers it."""

    @abstractmethod
    async def close(self, code: int, reason: str) -> None: ...

    async def reconnect(self, disrupt, refuse: bool) -> str | None:
        """The `reconnect` step (only in scenarios of a family whose clients reconnect by
        themselves: Socket.IO): call `disrupt()` (blocking: the harness drops or restarts the
        server), then wait for the library's own reconnection; `refuse`: the server came back with
        a certificate the client must refuse, wait until the library gave up instead. Returns None
        if the client behaved, else what went wrong, as far as the client can tell (the harness
        checks what the server and the TLS probe saw)."""
        raise NotImplementedError(f"{type(self).__name__} does not reconnect by itself")


class TokenRefused(Exception):
    """A token-auth server refuses the request before the upgrade; each server answers it its
    library's way: HTTP 401 with `www_authenticate` (RFC 6750) and the reason as the body, or a
    Socket.IO connect error carrying the reason."""

    status = 401

    def __init__(self, reason: str, error: str | None = None):
        super().__init__(reason)
        self.reason, self.error = reason, error  # error: RFC 6750's code; None when no token came

    @property
    def www_authenticate(self) -> str:
        if self.error is None:
            return 'Bearer realm="mtls-matrix"'
        return f'Bearer realm="mtls-matrix", error="{self.error}", error_description="{self.reason}"'


def check_token(tokens: dict[str, str], authorization: str | None, query: str | None, payload: Any = None) -> str:
    """The identity the request's token names, from the first carrier present: the Authorization
    header, the `token` query parameter, a Socket.IO auth payload's `token`. A malformed header is
    refused, not skipped for the next carrier. Raises TokenRefused."""
    if authorization is not None:
        scheme, _, presented = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not presented.strip():
            raise TokenRefused("malformed Authorization header: expected 'Bearer <token>'", "invalid_request")
        presented = presented.strip()
    elif query is not None:
        presented = query
    elif payload is not None:
        presented = payload
    else:
        raise TokenRefused("no token: send 'Authorization: Bearer <token>', ?token=<token> or a Socket.IO auth token")
    if not isinstance(presented, str) or not TOKEN_SHAPE.match(presented):
        raise TokenRefused("malformed token", "invalid_request")
    if presented not in tokens:
        raise TokenRefused("token not valid", "invalid_token")
    return tokens[presented]


def query_token(path_or_query: str) -> str | None:
    """The `token` query parameter of a request path (or a bare query string); "" when empty."""
    query = urlsplit(path_or_query).query if "?" in path_or_query else path_or_query
    values = parse_qs(query, keep_blank_values=True).get("token")
    return values[0] if values else None


def subject_cn(peer_cert: dict | str | None) -> str | None:
    """The subject CN of a certificate as the stack gives it to the application: ssl's getpeercert(), or
    PEM text (a WSGI environ's SSL_CLIENT_CERT, the ASGI TLS extension's chain)."""
    if isinstance(peer_cert, str):
        return _pem_subject_cn(peer_cert)
    subject = dict(rdn[0] for rdn in (peer_cert or {}).get("subject", ()))
    return subject.get("commonName")


_COMMON_NAME = bytes.fromhex("0603550403")  # the DER of OID 2.5.4.3


def _der(data: bytes, i: int) -> tuple[int, int, int]:
    """(tag, start, end) of the content of the DER element at offset i."""
    tag, length, i = data[i], data[i + 1], i + 2
    if length & 0x80:
        n = length & 0x7F
        length, i = int.from_bytes(data[i:i + n], "big"), i + n
    return tag, i, i + length


def _pem_subject_cn(pem: str) -> str | None:
    """The subject CN of a PEM certificate (the standard library decodes none but its own peer's)."""
    der = ssl.PEM_cert_to_DER_cert(pem)
    _, i, _ = _der(der, 0)  # Certificate
    _, i, _ = _der(der, i)  # TBSCertificate: [0] version, serial, signature, issuer, validity, subject
    fields = []
    while len(fields) < 6:
        tag, start, end = _der(der, i)
        fields.append((tag, start, end))
        i = end
    _, start, end = fields[5] if fields[0][0] == 0xA0 else fields[4]
    while start < end:  # the RDN SETs, each holding a SEQUENCE {OID, value}
        _, rdn, start = _der(der, start)
        _, oid_at, _ = _der(der, rdn)
        if der.startswith(_COMMON_NAME, oid_at):
            _, first, last = _der(der, oid_at + len(_COMMON_NAME))
            return der[first:last].decode()
    return None


class ServerHooks:
    """What a server's library code reports, at the points an application would act: the harness
    records it for the cell (peers.RecordingHooks), a reproducer prints it. Called on the server's
    own thread; `path` is the request path the client connected to."""

    # a token-auth listener: requests without a valid token are refused before the upgrade
    tokens_required = False

    def authorize(self, path: str, authorization: str | None, payload: Any = None) -> str:
        """The identity the request's token names (check_token over the header, the path's `token`
        query parameter, a Socket.IO auth payload); raises TokenRefused, which the server answers."""
        raise TokenRefused("this server takes no tokens")

    def opened(self, path: str, headers: Any, peer_cert: dict | str | None, identity: str | None = None,
               error: str | None = None, **details: Any) -> None:
        """The handler runs: the client certificate as the application sees it (getpeercert(), or PEM
        text: subject_cn), or the identity a token named; `error`: reading the certificate raised this;
        `details`: what else the library tells the handler about the connection (Socket.IO: its namespace
        and transport)."""

    def transport(self, path: str, transport: str) -> None:
        """Socket.IO: the transport carrying the connection as the server answers it (an upgrade changes it)."""

    def closed(self, path: str, code: int | None, reason: str | None) -> None:
        """The handler saw the connection close with this code and reason."""
