"""The evidence every server is judged on, read the same way whatever its language or process.

Two sources, for every server alike:
- what the server recorded itself: the probe's record of a Python server's own verification
  (observe.py), a foreign program's or a proxy's log line, each mapped by its peer module onto the
  same event with an `own_check` flag (`own_check_failed`);
- what it put on the wire, as the client saw it: the TLS alert the client received, or how else
  the connection ended (close_notify, FIN, reset, still open), and when (`wire`). A Python
  client's probe sees the alert in OpenSSL's reason (SSLV3_ALERT_BAD_CERTIFICATE); a foreign
  client reports its stack's own words (Go's "remote error: tls: bad certificate", Node's
  ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED), read here by one table.

verdict.rejection combines them; this module only reads.
"""

from __future__ import annotations

import re
from typing import Any, Iterable

from mtls_matrix.observe import Event
from mtls_matrix.results import Advisory, ErrorInfo, Wire

# TLS alerts by their RFC name (RFC 8446 section 6, RFC 5246 section 7.2) -> Go's words for them
# (crypto/tls alert.go); OpenSSL-based stacks name them in their reasons (TLSV1_ALERT_UNKNOWN_CA,
# "tlsv13 alert certificate required").
ALERTS = {
    "close_notify": "close notify",
    "unexpected_message": "unexpected message",
    "bad_record_mac": "bad record MAC",
    "record_overflow": "record overflow",
    "handshake_failure": "handshake failure",
    "bad_certificate": "bad certificate",
    "unsupported_certificate": "unsupported certificate",
    "certificate_revoked": "revoked certificate",
    "certificate_expired": "expired certificate",
    "certificate_unknown": "unknown certificate",
    "illegal_parameter": "illegal parameter",
    "unknown_ca": "unknown certificate authority",
    "access_denied": "access denied",
    "decode_error": "error decoding message",
    "decrypt_error": "error decrypting message",
    "protocol_version": "protocol version not supported",
    "insufficient_security": "insufficient security level",
    "internal_error": "internal error",
    "inappropriate_fallback": "inappropriate fallback",
    "user_canceled": "user canceled",
    "missing_extension": "missing extension",
    "unsupported_extension": "unsupported extension",
    "unrecognized_name": "unrecognized name",
    "bad_certificate_status_response": "bad certificate status response",
    "unknown_psk_identity": "unknown PSK identity",
    "certificate_required": "certificate required",
    "no_application_protocol": "no application protocol",
}
# The alert's canonical error (verdict.py's vocabulary). bad_certificate and certificate_unknown name
# no reason: OpenSSL sends bad_certificate for a certificate that is not yet valid, Go for every
# refused client certificate.
ALERT_CANONICAL = {
    "unknown_ca": "UNKNOWN_CA", "certificate_expired": "CERT_EXPIRED", "certificate_revoked": "CERT_REVOKED",
    "certificate_required": "CERT_REQUIRED", "unsupported_certificate": "BAD_EKU",
    "bad_certificate": "BAD_CERTIFICATE", "certificate_unknown": "BAD_CERTIFICATE",
    "handshake_failure": "HANDSHAKE_FAILURE", "protocol_version": "PROTOCOL_VERSION",
}
# A received alert in OpenSSL's words (its reason codes, its messages), and in Go's
_OPENSSL_ALERT = re.compile(r"(?:sslv3|tlsv13|tlsv1)[ _]alert[ _]([a-z_ ]+)", re.I)
_GO_ALERT = re.compile(r"remote error: tls: ([a-zA-Z ]+)")
_BY_GO_WORDS = {words.lower(): name for name, words in ALERTS.items()}
# How else a connection ends, in the words of the stacks (Python, OpenSSL, Go, Node, Ruby)
_CLOSE_NOTIFY = re.compile(r"has been closed \(EOF\)|ZERO_RETURN|close notify", re.I)
_RESET = re.compile(r"reset by peer|ECONNRESET|ConnectionReset|CONNECTION_RESET|broken pipe|EPIPE", re.I)
_FIN = re.compile(r"\bEOF\b|unexpected eof|eof occurred|UNEXPECTED_EOF|socket hang up|before secure TLS connection"
                  r"|connection closed|IncompleteRead|Connection to remote host was lost|Server disconnected"
                  r"|closed connection without response", re.I)
# the kinds of the probe's (and the foreign programs') TLS events
TLS_ERRORS = ("handshake-error", "read-error")
HANDSHAKES = ("handshake-ok", "handshake-error")
# the server's refusals after TLS: a token-auth server's (peers.TokenAuth), an application's
# (peers/proxy_identity.py), nginx's HTTP 400 (peers/nginx.py)
REFUSED_UPGRADES = ("auth-refused", "app-refused", "upgrade-refused")


def own_check_failed(data: dict) -> bool:
    """The recorded TLS error is this side's own verification refusing the other side's certificate
    (not an alert it received): OpenSSL's verify code, or a peer module's table said so."""
    return data.get("verify_code") is not None or bool(data.get("own_check"))


def server_refused(data: dict) -> bool:
    """A server's handshake error that is its own refusal of the client (not the client going away,
    nor an alert the client sent): its own verification failed, or the client sent no certificate."""
    return own_check_failed(data) or "PEER_DID_NOT_RETURN" in str(data.get("reason"))


def alert_in(text: str) -> str | None:
    """The TLS alert (RFC name) a stack's error text says it received, if any."""
    go = _GO_ALERT.search(text)
    if go:
        return _BY_GO_WORDS.get(go.group(1).strip().lower())
    for match in _OPENSSL_ALERT.finditer(text):
        words = match.group(1).strip().lower().replace(" ", "_")
        known = [name for name in ALERTS if words == name or words.startswith(name + "_")]
        if known:
            return max(known, key=len)
    return None


def alert_canonical(alert: str | None) -> str | None:
    """An alert's canonical error; one without a certificate meaning keeps its RFC name."""
    return ALERT_CANONICAL.get(alert, f"ALERT_{alert.upper()}") if alert else None


def _text(data: dict[str, Any]) -> str:
    return " ".join(str(data[k]) for k in ("type", "code", "reason", "verify_error", "message") if data.get(k))


def _ending(text: str, canonical: str | None = None) -> str | None:
    """How a connection ended that no alert ended, by the words of its error: close_notify | reset | fin."""
    if alert_in(text) == "close_notify" or _CLOSE_NOTIFY.search(text):
        return "close_notify"
    if canonical == "CONNECTION_RESET" or _RESET.search(text):
        return "reset"
    if canonical == "EOF" or _FIN.search(text):
        return "fin"
    return None


def received(events: Iterable[Event], error: ErrorInfo | None) -> tuple[str | None, Event | None]:
    """The alert the client received from the server, and the client's TLS event that carries it
    (None when it was read from the error the client's user got, which carries no time). An error
    of the client's own verification is no alert received."""
    for event in events:
        if event.side == "client" and event.kind in TLS_ERRORS and not own_check_failed(event.data):
            alert = alert_in(_text(event.data))
            if alert and alert != "close_notify":
                return alert, event
    if error is not None:
        for text in (error.message or "", *error.chain):
            alert = alert_in(text)
            if alert and alert != "close_notify":
                return alert, None
    return None, None


def wire(events: list[Event], error: ErrorInfo | None, connected: bool, timed_out: bool,
         failed_ms: float | None) -> Wire | None:
    """How the server ended the client's connection attempt, as the client saw it; None when the
    client connected, when its own verification ended the attempt (the server put nothing on the
    wire it could judge), when an HTTP response ended it (the server answered at the upgrade), or
    when the client cannot tell. `failed_ms`: when the client's attempt failed, for an ending only
    the user's error shows."""
    if connected:
        return None
    client_errors = [e for e in events if e.side == "client" and e.kind in TLS_ERRORS]
    if any(own_check_failed(e.data) for e in client_errors):
        return None
    if error is not None and (error.canonical or "").startswith("HTTP_"):
        return None
    alert, carrier = received(events, error)
    if alert:
        at = carrier.t * 1000 if carrier else failed_ms
        return Wire(alert=alert, ended="alert", after_ms=None if at is None else round(at, 2))
    for event in client_errors:
        ended = _ending(_text(event.data))
        if ended:
            return Wire(ended=ended, after_ms=round(event.t * 1000, 2))
    if error is not None and not timed_out:
        ended = _ending(" ".join((error.message or "", *error.chain)), error.canonical)
        if ended:
            return Wire(ended=ended, after_ms=failed_ms)
    if timed_out and error is None:
        return Wire(ended="open")
    return None


def handshakes(events: list[Event]) -> int | None:
    """TLS handshakes the server saw in the cell: the TLS connections it accepted or reported an
    outcome for, each once (the probe numbers its connections, a foreign program names them by
    their remote port, a proxy's log by the remote port or its own connection number). None when
    the server reported nothing: not counted."""
    seen: set = set()
    for index, event in enumerate(events):
        if event.side == "server" and event.kind in ("accept", *HANDSHAKES):
            port, number = event.data.get("remote_port"), event.data.get("connection")
            seen.add(("port", port) if port else ("connection", number) if number else ("event", index))
    return len(seen) or None


def repeated(events: list[Event], refused: bool, requests: int = 1) -> Advisory | None:
    """A client that repeated a refused handshake or upgrade on its own, in a cell whose connection
    attempt the server refused: the server refused more TLS handshakes (a proxy's failed handshakes
    count: its log gives no more), or more requests at the upgrade, than the attempt makes by design
    (`requests`, ClientPeer.requests). Connections the client dropped itself (a browser's spare
    socket, its reconnect at the certificate request) are handshakes the server saw, not refusals."""
    if not refused:
        return None
    upgrades = sum(e.side == "server" and e.kind in REFUSED_UPGRADES for e in events)
    if upgrades > requests:
        return Advisory(kind="repeated-handshake", text=f"the client repeated the refused upgrade on its own: the "
                                                        f"server refused {upgrades} requests in one connection attempt")
    handshakes = sum(e.side == "server" and e.kind == "handshake-error"
                     and (server_refused(e.data) or "proxy" in e.data) for e in events)
    if handshakes > requests:
        return Advisory(kind="repeated-handshake", text=f"the client repeated the refused handshake on its own: the "
                                                        f"server refused {handshakes} TLS handshakes in one connection "
                                                        f"attempt")
    return None
